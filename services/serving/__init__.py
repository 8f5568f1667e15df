"""Model serving: Triton model repository (python backend) and in-process inference, same code.

``python -m services.serving`` builds the model repository and runs the Triton server bundled with
nvidia-pytriton as a plain process (CPU works; a GPU is used when present).
"""
