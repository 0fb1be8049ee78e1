"""Built-in task plugins (one file each); installed as gpt2eval.tasks."""
