"""The final recovery: more epochs of distillation for a result that ended short of its final budget."""
