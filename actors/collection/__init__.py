"""Collection with critical-state approval (`flywheel collect`), beside its actors.

config    CollectConfig (SelectionConfig, actors.so101.RobotConfig), collect_config,
          the option checks (check_source, parse_approver)
episode   run_collection_episode: the loop, critical states, admins, responders, undo
workcell  ArmWorkcell: an emulated or real SO-101 follower and cameras as the loop's env
sources   open_env, PolicyAction, make_responders, make_selector
rollout   collect_episode / collect_group (the Ray task body): rows, videos, log lines
driver    run(CollectConfig) -> CollectResult, plan_collection, collection_summary
"""
