"""VEBI: visual explanation by interpretation (Oramas, Wang and Tuytelaars, ICLR 2019; Wang
thesis ch. 3; spec shared/specs/vebi.md)."""
