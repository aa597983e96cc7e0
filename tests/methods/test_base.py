"""The Method protocol: declared needs, config sections resolved by name, defaults."""

import pytest

from diffalign.methods import METHODS, method_class
from diffalign.methods.base import NEEDS, DenoisingConfig, Method, MethodConfig


def test_config_sections_resolve_by_name():
    cls = MethodConfig.resolve_class("diffusion_dpo")
    assert issubclass(cls, DenoisingConfig) and cls().name == "diffusion_dpo"
    with pytest.raises(ValueError, match=r"unknown method 'nope' \(known: "):
        MethodConfig.resolve_class("nope")
    with pytest.raises(ValueError, match="t_min/t_max must satisfy"):
        DenoisingConfig(t_min=5, t_max=5).validate()


def test_every_registered_method_declares_its_needs_and_config():
    for name in METHODS:
        cls = method_class(name)
        assert issubclass(cls, Method) and cls.paper and issubclass(cls.Config, MethodConfig)
        assert all(isinstance(getattr(cls, f"needs_{n}"), bool) for n in NEEDS)
        assert "reference" not in cls.class_needs()


def test_needs_follow_the_attributes():
    class Online(Method):
        needs_rollouts = True
        needs_reward = True

    m = Online()
    assert m.needs() == {"reference", "rollouts", "reward"} and Online.class_needs() == {"rollouts", "reward"}
    m.needs_reference = False
    assert m.needs() == {"rollouts", "reward"} and m.modules() == {} and m.state_dict() == {}
