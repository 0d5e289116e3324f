"""What spans the stages: the demo (synth to explain) and the overview of a project."""
