"""Test scaffolding: synthetic weight writers, crafted pickles and tiny
training problems (not part of the package)."""
