"""VEBI: visual explanation by interpretation (Oramas, Wang & Tuytelaars, ICLR 2019; Wang thesis ch. 3)."""
