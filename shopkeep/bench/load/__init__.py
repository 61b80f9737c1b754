"""``shopkeep bench``: the load-testing harness of SPEC section 9.

It drives a mix of customer journeys against a running server (over HTTP) or an embedded
:class:`shopkeep.shop.Shop`, shows live progress, reports each operation's throughput and
latency, and ends with the audit. One concern per module:

- :mod:`.mix` the journeys a run is made of, their weights, and the refusals each operation
  expects;
- :mod:`.target` what a journey needs from a shop, and :mod:`.http_target` /
  :mod:`.embedded_target` its two implementations;
- :mod:`.journeys` the journeys themselves; :mod:`.recorder` what they measured;
- :mod:`.schedule` when journeys start (closed or paced, the ramp, an early stop);
- :mod:`.run` setup, the run, the quiet-wait and the audit; :mod:`.progress` the live line;
- :mod:`.thresholds` the figures CI gates on; :mod:`.compare` the changes since an earlier run;
- :mod:`.report` the text table, the JSON figures and the exit status; :mod:`.html_report` the
  HTML page, its charts drawn by :mod:`.charts`;
- :mod:`.command` what ``shopkeep bench`` does once its flags are read (Ctrl-C included).
"""
