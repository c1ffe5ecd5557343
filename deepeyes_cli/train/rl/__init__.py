"""GRPO with live tools: rollouts through the one agent loop, a token-exact training
forward pass, collapse alarms and exact resume (design: ``rl_design.md``)."""
