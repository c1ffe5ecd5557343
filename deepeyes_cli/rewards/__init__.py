"""Rewards: format rules, rule-based answer matching, a cached LLM judge.

``reward.RewardScorer`` scores trajectories into ``RewardBreakdown`` records;
``scorefile.judge_file`` scores a JSONL file resumably (``deepeyes judge``). The pieces:
``format`` (tag rules), ``match`` with ``choices``/``normalize``/``mathcheck`` (answer
rules), ``judge`` and ``cache`` (the LLM judge), ``config`` (the recipe's ``reward:``).
"""
