"""ISTRC (Li & Wang, "Image Semantic Transformation: Faster, Lighter and Stronger"), the
Image-Semantic-Transformation-Reconstruction-Circle of the spec ``shared/specs/istrc.md``: a
frozen face encoder's unit-sphere latents, decoded through a BEGAN discriminator's decoder and
edited by gradient steps of latent attribute classifiers. The package holds the ISTRC stages:
``face_encoder``, ``triplet_loss`` and ``facenet_module`` (stage 1, E: the frozen unit-sphere
face encoder, a local checkpoint or the FaceNet stand-in trained with semi-hard triplets, and its
verification), ``began_networks`` and ``began`` (stage 2, the BEGAN whose discriminator's decoder
draws the faces), ``latent_cache`` (stage 3, z = E(x) and h = D_enc(x) of every face, written per
split), ``mapping`` (stage 4, F: z -> h) and ``latent_classifier`` (stage 5, one C_a per
attribute), and the pure-torch latent pieces: ``sphere`` (normalising, slerp and lerp, n-face
means, arithmetic, noise variations) and ``edit_path`` (the semantic transformation).
"""
