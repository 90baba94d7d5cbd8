"""The ground floor's runtime: cluster connection, tracking, checkpoints, the Ray Train skeleton."""
