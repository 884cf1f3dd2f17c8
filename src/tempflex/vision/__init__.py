"""The any-resolution vision path of TempFlex-VL (paper section 3.1): ``resize`` picks each image's even 32-px grid
under its patch budget, ``patches`` cuts 16x16 patches, ``encoder`` runs SigLIP2-naflex (transformers'
``Siglip2VisionModel``) per image with its position table interpolated to the image's grid, and ``flux_modules``
holds FluxViT's optional encoder plug-ins (GLPE, dual patch norm). Import the submodules directly."""
