"""The recipe: one pydantic model with a section per stage.

Each section's model lives with the code that uses it (``sandbox/config.py`` …) so a
package owns its options; this module only assembles them.
"""

from __future__ import annotations

from pydantic import Field

from deepeyes_cli.agent.config import AgentConfig
from deepeyes_cli.bench.config import BenchConfig
from deepeyes_cli.curate.config import CurateConfig
from deepeyes_cli.launch.config import LaunchConfig
from deepeyes_cli.models.config import ModelConfig
from deepeyes_cli.policy.config import PolicyConfig
from deepeyes_cli.recipe.base import Section
from deepeyes_cli.rewards.config import RewardConfig
from deepeyes_cli.sandbox.config import SandboxConfig
from deepeyes_cli.search.config import SearchConfig
from deepeyes_cli.serve.config import ServeConfig
from deepeyes_cli.train.config import RLConfig, SFTConfig


class RunConfig(Section):
    name: str | None = Field(None, description="Defaults to the recipe file's stem.")
    description: str = ""
    seed: int = 0
    runs_dir: str = Field("runs", description="Where `runs/<recipe>-<stage>-<UTC time>/` are created.")
    cache_dir: str | None = Field(None, description="Models, search cache …; default ~/.cache/deepeyes.")
    log_level: str = "info"


class Recipe(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    launch: LaunchConfig = Field(default_factory=LaunchConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    curate: CurateConfig = Field(default_factory=CurateConfig)
