"""Test scaffolding: synthetic weight writers and tiny training problems
(not part of the package)."""
