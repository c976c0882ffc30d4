"""LoRA-distill trainer on the runtime: testbed images -> VAE latents -> forward noise; loss of :mod:`.distill`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import torch

from zoo.train.trainer import OptimizerGroup, Trainer

from zoo_plugins.lora_distill.distill import SharedBaseStudent
from zoo_plugins.lora_distill.guidance_embedding import GuidanceEmbedding
from zoo_plugins.lora_distill.sampler import EMBEDDING_FILE, LORA_FILE


class StudentModules(torch.nn.Module):
    """The trainable parts as one module (checkpointed and EMA'd by the runtime): LoRA layers live inside the UNet,
    so they are registered here by reference."""

    def __init__(self, student: SharedBaseStudent) -> None:
        super().__init__()
        self.guidance_embedding = student.guidance_embedding
        self.lora = torch.nn.ParameterList(student.lora_parameters())


class LoRADistillTrainer(Trainer):
    def build(self) -> None:
        from zoo.hub import resolve_model
        from zoo.t2i import SDComponents

        cfg = self.config
        self.method_name = "lora_distill"
        self.components = SDComponents.from_folder(resolve_model(cfg.teacher).path, device=self.device)
        unet = self.components.unet
        embedding = GuidanceEmbedding.for_unet(unet, int(cfg.guidance_features))
        self.student = SharedBaseStudent(unet, int(cfg.lora_rank), float(cfg.lora_alpha), list(cfg.lora_targets),
                                         embedding)
        self.trainable = StudentModules(self.student)
        self.uncond = self.components.encode_prompt([""])

    def trainable_modules(self):
        return {"trainable": self.trainable}

    def parallel_modules(self):
        # the LoRA layers live in the teacher's UNet; the guidance embedding runs on its own
        return {"unet": self.components.unet, "guidance_embedding": self.student.guidance_embedding}

    def optimizer_groups(self):
        return [OptimizerGroup("student", [p for p in self.trainable.parameters() if p.requires_grad],
                               self.config.optim.student)]

    def batches(self, seed: int) -> Iterator[dict[str, Any]]:
        from zoo.diffusion.distill_data import testbed_image_batches

        return testbed_image_batches(seed, int(self.config.data_seed), int(self.config.train.batch_size))

    def loss(self, group: str, step: int, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from zoo.diffusion.schedule import add_noise

        cfg = self.config
        c = self.components
        x0 = self.components.encode_images(batch["images"])
        b = x0.shape[0]
        t = torch.randint(0, len(c.alphas_cumprod), (b,), device=self.device)
        x_t = add_noise(x0, torch.randn_like(x0), t, c.alphas_cumprod)
        w = cfg.guidance_min + (cfg.guidance_max - cfg.guidance_min) * torch.rand(b, device=self.device)
        cond = c.encode_prompt(batch["captions"])
        loss = self.student.loss(x_t, t, cond, self.uncond.expand(b, -1, -1), w)
        return {"loss": loss}

    def export_manifest(self) -> dict[str, Any]:
        cfg = self.config
        return {"base_model": cfg.teacher, "lora": LORA_FILE, "guidance_embedding": EMBEDDING_FILE,
                "guidance_embedding_config": self.student.guidance_embedding.config,
                "guidance_range": [float(cfg.guidance_min), float(cfg.guidance_max)],
                "sampler": {"steps": int(cfg.sample_steps), "guidance_scale": float(cfg.sample_guidance_scale)}}

    def export(self, out_dir: Path, metrics: dict[str, Any]) -> Path:
        from safetensors.torch import save_file

        from zoo.diffusion.lora_io import peft_adapter_to_kohya, save_lora
        from zoo.train.export import write_export_metadata

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with self.ema_weights():
            save_lora(peft_adapter_to_kohya(self.components.unet, SharedBaseStudent.ADAPTER, dtype=torch.float16),
                      out_dir / LORA_FILE)
            state = {k: v.detach().cpu().half().contiguous()
                     for k, v in self.student.guidance_embedding.state_dict().items()}
            save_file(state, str(out_dir / EMBEDDING_FILE))
        write_export_metadata(self, out_dir, metrics, files=[LORA_FILE, EMBEDDING_FILE])
        return out_dir
