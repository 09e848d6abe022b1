"""Input grid <-> model grid. Each step in a module of its own: orientation, template
registration and resampling (`registration`), the brain mask's three strategies
(`brain_mask`), intensity normalisation and the one model-grid intensity range (`intensity`);
`pipeline` composes them and keeps the exact way back. The template and the model grid
(`templates`), building the shipped template (`template_build`); plausibility checks of an
input and its registration, including its apparent contrast (`quality`); the pipeline with
every refusal and warning, as detection and training both run it (`checked`); a deformable
refinement of the registration that only the findings' atlas uses (`deformable`).
"""
