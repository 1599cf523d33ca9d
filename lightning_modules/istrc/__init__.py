"""ISTRC (Li & Wang, "Image Semantic Transformation: Faster, Lighter and Stronger"): its stages and uses; spec shared/specs/istrc.md."""
