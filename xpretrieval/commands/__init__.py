"""The commands (train with rounds, evaluate, mine, export, report, baseline, push), their
run directories and resume rules."""
