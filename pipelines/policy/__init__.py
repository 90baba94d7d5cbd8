"""Stage 3: advantage-conditioned policies (AWBC / RECAP) and their evaluation in the simulator.

model      PolicyConfig, the hashing prompt encoder and the action-chunk policy (PyTorch)
data       episodes in memory, chunk targets (LeRobot delta timestamps, action_is_pad),
           prompts from task_index, data-type weights and sampling (pure numpy)
weighting  AWR / IQL weights, expectile loss, Bellman targets, weight statistics (pure)
learner    one training step of policy and critics (plain PyTorch, no Ray)
config     PolicyTrainConfig (learner, sampling, network, run sections), the checkpoint KIND
scan       the up-front check of every training episode's columns, normalization statistics
training   `flywheel train-policy`: the Ray Train job (`run`)
evaluate   `flywheel eval-policy`: the Policy protocol, checkpoint-kind loaders, scripted
           controllers, episodes as Ray tasks, Wilson intervals and McNemar tests
"""
