"""bistil_ray: bilingual distillation (BiStil) of multilingual transformers, swept on Ray.

Layout:
  bistil_ray.assets         teachers: hub ids, local directories, the built-in offline e5 teacher
  bistil_ray.data           task data (built-in, hub, local files) and unlabelled corpora
  bistil_ray.method         the method in plain PyTorch (no Ray): vocabulary, student, losses,
                            sparse fine-tuning, phases, evaluation, export
  bistil_ray.run            one language pair, no Ray: `python -m bistil_ray.run CONFIG.yaml`
  bistil_ray.orchestration  Ray Train / Ray Tune around the method
"""

__version__ = "0.1.0"
