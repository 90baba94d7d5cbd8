"""HIL-SERL's learning, without Ray: the agent (`agent`: DrQ-v2 with a BC term, its configs in
`config`), the replay buffer (`replay`), replay frames (`frames`), frozen image encoders
(`features`), the offline buffer's demos (`offline`), the Q monitor (`monitor`), a saved actor
as a policy (`policy`) and eval-policy's loader of `hilserl` checkpoints (`eval_loader`)."""
