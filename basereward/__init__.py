"""basereward: multimodal reward models, the BaseReward recipe. Heavy imports happen on first use."""

__all__ = ["RewardModel", "load_reward_model", "load_scorer"]


def __getattr__(name):
    if name in ("RewardModel", "load_reward_model"):
        from basereward.model import reward_model

        return getattr(reward_model, name)
    if name == "load_scorer":
        from basereward.scoring import load_scorer

        return load_scorer
    raise AttributeError(name)
