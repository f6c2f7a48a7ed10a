"""Knowledge distillation of a pruned student from a teacher: losses, training loop, multi-process launch."""
