"""Image rewards: CLIP score, LAION aesthetic v2, PickScore, HPSv2/2.1, ImageReward (one module each)."""
