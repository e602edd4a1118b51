"""Training machinery: the subdivision and multi-device updaters, ChainerMN,
the learning-rate schedule, sound snapshots, starting weights, the flag
defaults, and the set-up, building and results ``train.py`` wires
together."""
