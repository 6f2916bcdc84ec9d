"""Payload-differential check (techniques.md 4.5): to one reflector port, plain STUN,
app-flavoured STUN (``flavor``: WhatsApp's message types and attributes, Teams' Microsoft
attributes, Google's 0xFF03, a REALM naming the app) and random bytes, all of the same
length, each the first packet of its own flow (a fresh source port), in random order and
repeated; the neutral kinds (random bytes, plain STUN) also before the first app probe and
again after it (:mod:`probe.checks._trials`). The reflector answers STUN Binding requests
and echoes the rest, each carrying the run's cookie token where DPI does not look
(:mod:`probe.checks._reflector`: lengths and app markers unchanged). The reflector's port
443 is the baseline.

* random passes, plain STUN does not: ``stun_dpi``;
* plain STUN passes, app-flavoured STUN does not: ``app_stun_dpi``; when the neutral kinds
  passed before the first app probe and never after it, the app probe triggered residual
  blocking (``residual_blocking: true``, ``residual_kinds``), never ``udp_blocked``;
* nothing passes on the port while the baseline does, or a router on the path answers
  with ICMP port unreachable (``icmp_from``: its address): ``udp_blocked``;
* the reflector does not answer at all, or does not listen there (an ICMP error from the
  reflector itself): ``not_applicable``;
* the app's probes lost, but plain traffic lost about as much (a policer, heavy loss: no
  residual pattern, and every app probe lost is not beyond what the neutral kinds' loss
  explains, :func:`probe.checks._trials.app_singled_out`): ``not_applicable``
  (``starved``); the stream and call checks measure such loss;
* residual blocking after another check's app probe had been dropped on the same port
  first (``trials.foreign_app_dropped``): that probe may have set it off, and this app's
  own STUN cannot be judged there: ``not_applicable`` (``after_other_app``).

The confirmation pass runs after the main pass, within whatever blocking the run's app
probes triggered (a residual block; nDPI labels later STUN to the port with the app it
saw there): when the main pass found ``app_stun_dpi`` and the kinds failing now passed
there before its first app probe, the main pass's ``app_stun_dpi`` stands (with
``residual_blocking``), and its evidence is kept beside this pass's (``main_pass``).
"""

from __future__ import annotations

import asyncio

from probe import failures, stun
from probe.checks._base import CheckContext, CheckSpec, TestKeys, one_of, port_of
from probe.checks._payloads import differential_makers
from probe.checks._reflector import BASELINE_PORT, reflector_target
from probe.checks._trials import (
    APP,
    NEUTRAL,
    answered,
    any_answered,
    app_loss,
    merge_trials,
    passed_before_app,
    rejected_on_path,
    residual_kinds,
    trials,
)
from probe.model import Endpoint

NAME = "differential"
VERSION = "0.1.0"
SPEC = CheckSpec(hosts="forbidden", options={"flavor": one_of(*stun.FLAVORS)},
                 doc="plain STUN, app-flavoured STUN (flavor = ...) and random bytes of one "
                     "length, in random order, to the reflector on each port")
REPEATS = 3
MIN_ROUND_S = 1.0  # budget left worth another round of trials
_RETRY = {"stun_dpi", "app_stun_dpi", "random_blocked", "inconclusive", "udp_blocked",
          "starved"}
_METHOD = {"stun_dpi": "stun_dpi", "app_stun_dpi": "app_stun_dpi",
           "udp_blocked": "udp_blocked"}
_FAILED_OPERATION = {"stun_dpi": "stun", "app_stun_dpi": "app_stun", "udp_blocked": "udp",
                     "random_blocked": "random", "inconclusive": "differential"}


def outcome(test_keys: TestKeys) -> str:
    """ok | stun_dpi | app_stun_dpi | udp_blocked | random_blocked | inconclusive |
    nothing_listens | reflector_unreachable | after_other_app | starved, from the stored counts
    (and, in the confirmation pass, the main pass's evidence kept beside them)."""
    result = _own_outcome(test_keys)
    trials_ = test_keys.get("trials") or {}
    if trials_.get("foreign_app_dropped") and not test_keys.get("main_pass") and (
            (result == "app_stun_dpi" and residual_kinds(trials_)) or result == "starved"):
        return "after_other_app"  # the other app's residual block may explain the loss
    if result not in ("ok", "app_stun_dpi", "nothing_listens", "reflector_unreachable",
                      "after_other_app", "starved") \
            and _explained_by_main_pass(test_keys, test_keys.get("main_pass")):
        return "app_stun_dpi"
    return result


def _own_outcome(test_keys: TestKeys) -> str:
    same, base = test_keys.get("trials"), test_keys.get("baseline")
    r = answered(same, "random")
    s = answered(same, "stun")
    a = answered(same, "app_stun")
    if r and s and a is not False:
        return "ok"
    if r and s is False:
        return "stun_dpi"
    if r and s and a is False:
        return app_loss(same)
    if not any_answered(same):
        if rejected_on_path(same):
            return "udp_blocked"  # a router refused them: the network, not the reflector
        if (same or {}).get("icmp") == failures.PORT_UNREACHABLE:
            return "nothing_listens"
        return "udp_blocked" if any_answered(base) else "reflector_unreachable"
    if s and not r:
        return "random_blocked"  # only recognised protocols pass: an allow-list
    return "inconclusive"


def methods(test_keys: TestKeys) -> list[str]:
    if test_keys.get("failure") in (None, failures.NOT_APPLICABLE):
        return []
    method = _METHOD.get(outcome(test_keys))
    return [method] if method else []


async def run(endpoint: Endpoint, ctx: CheckContext) -> TestKeys:
    port = port_of(endpoint)
    flavor = endpoint.options.get("flavor")
    ip, cookie, info = await reflector_target(ctx, port)
    if ip is None or cookie is None:
        return info
    makers, length = differential_makers(flavor)
    makers = cookie.stamped(makers)  # the token: STUN transaction ID, bytes 12-24 of random
    same, base = await asyncio.gather(
        trials(ctx, ip, port, makers, REPEATS, ctx.deadline),
        trials(ctx, ip, BASELINE_PORT,
                        {"random": makers["random"]}, 4, ctx.deadline, until_all_answered=True),
    )
    keys: TestKeys = {"failure": None, "failed_operation": None, "reflector_port": port,
                      "flavor": flavor, "payload_bytes": length, "trials": same,
                      "baseline": base, "main_pass": None}
    result = outcome(keys)
    # Random loss can starve one kind by chance; DPI starves it every time. More rounds,
    # while the budget lasts, until every kind has had an answer or it is clear.
    while result in _RETRY and ctx.remaining() > MIN_ROUND_S:
        # the kinds still without an answer, interleaved with random bytes for contrast
        missing = {k: m for k, m in makers.items()
                   if k == "random" or not answered(keys["trials"], k)}
        more = await trials(ctx, ip, port, missing, REPEATS, ctx.deadline,
                                     until_all_answered=True)
        keys["trials"] = merge_trials(keys["trials"], more)
        result = outcome(keys)
    main = ctx.main_pass
    if result not in ("ok", "app_stun_dpi", "nothing_listens", "reflector_unreachable",
                      "after_other_app", "starved") and main \
            and _explained_by_main_pass(keys, main):
        keys["main_pass"] = {"outcome": main["outcome"],
                             "residual_kinds": main.get("residual_kinds") or [],
                             "trials": main.get("trials")}
        result = outcome(keys)
    if result == "app_stun_dpi":
        if keys["main_pass"] is None:
            _note_residual(keys, residual_kinds(keys["trials"]))
        else:  # blocked now after passing before the main pass's app probe
            failing = {k for k in NEUTRAL if answered(keys["trials"], k) is False}
            _note_residual(keys, [k for k in NEUTRAL if k in failing
                                  or k in keys["main_pass"]["residual_kinds"]])
    if rejected_on_path(keys["trials"]):
        keys["icmp_from"] = keys["trials"]["icmp_from"]
    keys["outcome"] = result
    if result in ("nothing_listens", "reflector_unreachable", "after_other_app", "starved"):
        keys["failure"] = failures.NOT_APPLICABLE
        keys["reason"] = {"nothing_listens": "the reflector does not listen on this port",
                          "reflector_unreachable": "no answer from the reflector on this "
                                                   "port nor on its port 443",
                          "after_other_app": "another app's STUN was dropped on this "
                                             "reflector port just before, and everything "
                                             "to the port was dropped after: this app's "
                                             "own STUN cannot be judged there",
                          "starved": "the port lost most plain traffic too (a policer, "
                                     "heavy loss): no payload can be singled out; the "
                                     "stream and call checks measure that loss"}[result]
    elif result != "ok":
        keys["failure"] = failures.GENERIC_TIMEOUT
        keys["failed_operation"] = _FAILED_OPERATION[result]
    return keys


def _note_residual(keys: TestKeys, kinds: list[str]) -> None:
    keys["residual_blocking"] = bool(kinds)
    keys["residual_kinds"] = kinds


def _explained_by_main_pass(keys: TestKeys, main: TestKeys | None) -> bool:
    """Whether the main pass found ``app_stun_dpi`` and every neutral kind failing in this
    pass passed there before the app probe (the app kind never answering now): blocking
    the run's app probes triggered (a residual block, or a DPI engine that labels the
    port's later STUN with the app it saw there), not a port that was blocked all along."""
    if not main or main.get("outcome") != "app_stun_dpi":
        return False
    failing = [k for k in NEUTRAL if answered(keys.get("trials"), k) is False]
    return (bool(failing) and set(failing) <= set(passed_before_app(main.get("trials")))
            and not answered(keys.get("trials"), APP))
