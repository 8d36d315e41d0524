"""A contract suite for plugin authors: check a network, estimator or sampler against scorekit's contract.

Call the checks from your plugin's own tests; each raises :class:`ContractViolation` (an
``AssertionError``) whose message names the component and the rule it broke, and returns
a :class:`ContractReport` of the rules that passed::

    from scorekit.testing import check_network, check_estimator, check_sampler

    def test_my_sampler_keeps_the_contract(scorekit_host):
        scorekit_host.register_plugin(my_plugin)
        check_sampler("my_sampler", options={"n_steps": 50}, host=scorekit_host)

The ``scorekit_host`` fixture comes from the pytest plugin :mod:`scorekit.testing.pytest_plugin`;
hypothesis strategies for data shapes, sigma schedules and options live in
:mod:`scorekit.testing.strategies` (imported on its own, as it needs hypothesis).
``CorrelatedGaussian``, ``LinearScore`` and ``StandardGaussianScore``, the analytic ground truth
the checks run on, live in :mod:`scorekit.targets` and are re-exported here.
"""

from scorekit.targets import CorrelatedGaussian, LinearScore, StandardGaussianScore
from scorekit.testing.contract import ContractReport, ContractViolation
from scorekit.testing.estimator_contract import check_estimator
from scorekit.testing.network_contract import DEFAULT_SHAPES, DEFAULT_SIGMAS, check_network
from scorekit.testing.sampler_contract import CALLBACK_FIELDS, check_sampler

__all__ = [
    "CALLBACK_FIELDS",
    "ContractReport",
    "ContractViolation",
    "CorrelatedGaussian",
    "DEFAULT_SHAPES",
    "DEFAULT_SIGMAS",
    "LinearScore",
    "StandardGaussianScore",
    "check_estimator",
    "check_network",
    "check_sampler",
]
