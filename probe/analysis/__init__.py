"""Analysis of results files: run summaries (:mod:`.summaries`), before/after comparison
(:mod:`.compare`), onset and restoration per network (:mod:`.timeline`) and the HTML
report (:mod:`.report`). Pure functions of stored files: no network."""
