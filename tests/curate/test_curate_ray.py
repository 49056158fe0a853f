"""The stages run in Ray Data actor pools: models load in the actor (setup), batches are numpy."""

import numpy as np

from pipelines.curate.stage import set_up
from storage.media import read_image


class _OneStage:
    """The smallest actor over the stage contract: set up once, then process every batch."""

    def __init__(self, stage):
        [self.stage] = set_up([stage])

    def __call__(self, batch):
        return self.stage.process(batch)


def test_stages_run_in_ray_data_actor_pools(ray_local, skimage_dir):
    import sys

    import ray.cloudpickle
    import ray.data

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import test modules
    photos = [read_image(skimage_dir / name)[:256, :256] for name in ("astronaut.png", "coffee.png", "chelsea.png")]
    items = [
        {"id": f"row{i}", "keyframes": np.stack([p, p]), "caption": caption}
        for i, (p, caption) in enumerate(zip(photos, ["a person in a space suit", "you stupid idiot", "a cat"]))
    ]
    from pipelines.curate.filters import NSFWFilter, ToxicityFilter

    pool = ray.data.ActorPoolStrategy(size=1)
    dataset = ray.data.from_items(items)
    for stage in (NSFWFilter({"num_keyframes": 1}), ToxicityFilter()):
        dataset = dataset.map_batches(_OneStage, fn_constructor_kwargs={"stage": stage}, batch_format="numpy", batch_size=2, compute=pool)
    rows = sorted(dataset.drop_columns(["keyframes"]).take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == ["row0", "row1", "row2"]
    assert all(0.0 <= r["nsfw_score"] < 0.5 for r in rows)
    assert [r["toxicity_score"] > 0.5 for r in rows] == [False, True, False]


def test_annotate_actor_without_torch_models_starts_without_torch(tmp_path):
    """Actors start while videos are cut, so their start-up competes with the cut for CPU: a config
    with no torch model (no LLM, VLM, CLIP or watermark weights) must not pay for importing torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from pipelines.curate.annotate import Annotator\n"
        "from pipelines.curate.config import CurateConfig\n"
        "from pipelines.curate.job import build_stages\n"
        "from pipelines.curate.workdir import StageParts\n"
        "from storage.location import StorageLocation\n"
        f"location = StorageLocation({str(tmp_path)!r})\n"
        "stages = [s for s in build_stages(CurateConfig()) if s.runs_in == 'annotate']\n"
        "Annotator(location, stages, StageParts(location, 'annotate', key='id'))\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
