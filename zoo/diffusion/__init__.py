"""Paper-neutral diffusion maths shared by several methods (schedules, classifier-free guidance, losses, the
shared-base teacher). Method-specific logic stays in its plugin; what lives here is imported, never copied."""
