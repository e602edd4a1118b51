"""Training machinery: the subdivision and multi-device updaters, ChainerMN,
the learning-rate schedule, sound snapshots, starting weights and the
set-up ``train.py`` wires together."""
