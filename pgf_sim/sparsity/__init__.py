"""The torch-free sparsity core: what a recipe does, when, and to which layers.

- ``roles``: the layer-role vocabulary and the name rules that infer a role;
- ``schedules``: ``RecipeConfig``, the recipe registry, phases, MDGF's beta(t), SDGF's moving
  patterns, layer selection and the schedule as constant segments;
- ``flops``: per-segment GEMM densities and training FLOPs over a schedule.

Training (``pgf_sim.train``) runs these schedules on torch modules; the simulator
(``pgf_sim.sim``) costs them. Nothing here imports torch.
"""
from .roles import MLP_ROLES, QKV_ROLES, ROLES, layer_name, role_group, role_of
from .schedules import RECIPES, RecipeConfig, RecipeSpec, Segment, layer_target, segments

__all__ = ["ROLES", "MLP_ROLES", "QKV_ROLES", "role_of", "role_group", "layer_name",
           "RECIPES", "RecipeConfig", "RecipeSpec", "Segment", "layer_target", "segments"]
