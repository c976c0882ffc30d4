"""The testbed: a miniature Stable Diffusion world (32x32 coloured shapes) trained on 2 CPU cores.

- :mod:`zoo.testbed.data` - the procedural captioned dataset;
- :mod:`zoo.testbed.tokenizer` - an offline ``CLIPTokenizer`` for its vocabulary;
- :mod:`zoo.testbed.models` - the configs and builders of the diffusers parts;
- :mod:`zoo.testbed.evaluator` - colour / shape accuracy, diversity and Fréchet distance of generated images;
- :mod:`zoo.testbed.prompts` - the fixed benchmark prompt set;
- ``weights/teacher`` - the trained ``StableDiffusionPipeline`` folder (ref ``pkg:zoo.testbed/weights/teacher``).

See ``docs/TESTBED.md``. Importing this package imports neither torch nor diffusers.
"""

from pathlib import Path

TEACHER_DIR = Path(__file__).with_name("weights") / "teacher"
TEACHER_REF = "pkg:zoo.testbed/weights/teacher"
