"""Flywheel's Ray Serve deployments: the reward classifier endpoint and its clients.

    config        RewardAppConfig (the application: serving/reward.yaml's args) and
                  ServeConfig (the command: the application, host, ports, Ray address)
    request_body  the POST body on both sides of the wire (JSON + PNG/JPEG, .npy), the 400s
    deployment    the Serve deployment (batching, HTTP and handle API) and `reward_app`
    driver        `serve_reward(ServeConfig)`: checks, Ray, Serve's proxy, direct ingress
    client        HTTP and handle clients with retries
    reward        `build_app` (serve run / KubeRay) and the `flywheel serve-reward` command

(`serving.reward` is not imported here: `python -m serving.reward` runs it as a script.)
"""

from serving.client import HandleRewardClient, HTTPRewardClient, RewardUnavailable
from serving.config import APP_NAME, DEPLOYMENT, ROUTE, RewardAppConfig, ServeConfig
from serving.deployment import RewardDeployment, reward_app
from serving.driver import direct_urls, serve_reward, wait_for_http
from serving.request_body import RewardRequestError, parse_body

__all__ = [
    "APP_NAME",
    "DEPLOYMENT",
    "ROUTE",
    "HTTPRewardClient",
    "HandleRewardClient",
    "RewardAppConfig",
    "RewardDeployment",
    "RewardRequestError",
    "RewardUnavailable",
    "ServeConfig",
    "direct_urls",
    "parse_body",
    "reward_app",
    "serve_reward",
    "wait_for_http",
]
