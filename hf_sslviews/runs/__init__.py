"""The jobs behind the scripts: argument dataclasses and parsing, pretraining, the evaluation scripts' plumbing."""
