"""The GPU core: the diffusion models and everything that runs them.

``models`` loads the pipelines (the full profile from the Hub, the tiny one built by ``tiny``), ``instantid``
holds the IdentityNet and face-adapter glue, ``adapters`` and ``lora`` load and train a person's LoRA with
peft (on the crops and encodings ``lora_data`` prepares), ``recipe`` renders a batch, ``aoti`` runs the
ahead-of-time compiled UNet, ``zerogpu`` emulates ZeroGPU calls and reads its refusals, ``sizing`` sizes
the GPU calls (durations, charges, ETAs), and ``pipeline`` holds the ``@spaces.GPU`` entry points the
flows call. This layer may import the basics and ``faces``; never the flows (``studio``, ``results``) or
``web``. Only ``pipeline`` imports ``spaces``.
"""
