"""Stage 0 labeling: progress to advantage to the labeled prompt."""
