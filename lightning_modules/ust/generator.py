"""UST's generator side in one module: both content encoders, the style module(s), both decoders.

What the generator optimizer updates (spec section 4): E_A^C, E_B^C, the shared E^S + MLP, G_A
(with Fit-in) and G_B. The streams of the thesis (section 4.3) are compositions of four calls:

- ``encode_a(I_A, m_A)`` -> (z_A^C, z_A^S): E_A^C on the person (first block masked by m_A),
  E^S on the masked item view I_A^m (white outside m_A);
- ``encode_b(I_B)`` -> (z_B^C, z_B^S);
- ``decode_a(z^C, z^S, m_A, C_A)``: G_A, try-on into the context C_A of the person with mask m_A;
- ``decode_b(z^C, z^S)``: G_B, a catalog image.

So I_AB = decode_b(*encode_a(I_A, m_A)) (``take_off``), I_BA = decode_a(*encode_b(I_B), m_A, C_A)
(``try_on``), and the cycles re-encode: I_BAB = decode_b(*encode_a(I_BA, m_A)) (E^S reads
I_BA^m). A style code becomes AdaIN parameters through the MLP of the decoding domain's style
module: with ``shared_style`` (the thesis) one E^S + MLP serves both domains; without it (the
"W/O shared S.E." ablation) each domain has its own E^S and MLP, as in MUNIT, so E_B^S encodes
I_AB in L_LaR's style term and G_B reads MLP_B.

Ablation switches: ``mask_attention`` (m_A into G_A; D_A's is the discriminator's own switch),
``fit_in``, ``shared_style``; ``concat_mask`` adds m_A to the Fit-in input. Every width and count
is an argument, MUNIT's by default (spec section 3).
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from lightning_modules.ust.content_encoder import ContentEncoder
from lightning_modules.ust.decoders import TakeOffDecoder, TryOnDecoder
from lightning_modules.ust.masks import white_fill
from lightning_modules.ust.style_encoder import StyleModule

__all__ = ["Domain", "USTGenerator"]

#: "a": persons in context (VITON ``image/``); "b": catalog items (VITON ``cloth/``).
Domain = Literal["a", "b"]


class USTGenerator(nn.Module):
    """E_A^C, E_B^C, E^S + MLP (one, or one per domain), G_A and G_B.

    Args:
        image_channels: Channels of every image.
        base_channels: Width b of the content encoders' first block (the code has b 2^n).
        num_downsample: Stride-2 blocks n of the content encoders (= up-sampling blocks of the
            decoders).
        num_res_blocks: Residual blocks of each content encoder and AdaIN residual blocks of
            each decoder.
        style_dim: SD, the style code's size (8, 32 or 128 in the thesis).
        style_base_channels: Width of E^S's first conv.
        style_num_downsample: Stride-2 convs of E^S.
        mlp_channels: Width of the MLP's hidden layers.
        mlp_hidden_layers: Hidden layers of the MLP.
        mask_attention: Concatenate m_A to G_A's input.
        fit_in: G_A ends with the Fit-in module (False: conv block + last conv on F alone).
        concat_mask: The Fit-in module also reads m_A.
        fit_in_channels: Width of the Fit-in conv block.
        shared_style: One E^S + MLP for both domains (False: one per domain).
    """

    def __init__(
        self,
        image_channels: int = 3,
        base_channels: int = 64,
        num_downsample: int = 2,
        num_res_blocks: int = 4,
        style_dim: int = 8,
        style_base_channels: int = 64,
        style_num_downsample: int = 4,
        mlp_channels: int = 256,
        mlp_hidden_layers: int = 2,
        mask_attention: bool = True,
        fit_in: bool = True,
        concat_mask: bool = False,
        fit_in_channels: int = 64,
        shared_style: bool = True,
    ) -> None:
        super().__init__()
        content = {
            "in_channels": image_channels,
            "base_channels": base_channels,
            "num_downsample": num_downsample,
            "num_res_blocks": num_res_blocks,
        }
        self.content_a = ContentEncoder(**content, masked=True)
        self.content_b = ContentEncoder(**content)
        code = self.content_a.out_channels
        decoder = {"num_res_blocks": num_res_blocks, "num_upsample": num_downsample}
        self.decoder_a = TryOnDecoder(
            code,
            **decoder,
            image_channels=image_channels,
            mask_attention=mask_attention,
            fit_in=fit_in,
            concat_mask=concat_mask,
            fit_in_channels=fit_in_channels,
        )
        self.decoder_b = TakeOffDecoder(code, **decoder, image_channels=image_channels)
        style = {
            "num_adain_params": self.decoder_b.num_adain_params,  # G_A's too: same body
            "in_channels": image_channels,
            "base_channels": style_base_channels,
            "num_downsample": style_num_downsample,
            "style_dim": style_dim,
            "mlp_channels": mlp_channels,
            "mlp_hidden_layers": mlp_hidden_layers,
        }
        self.shared_style = shared_style
        if shared_style:
            self.style = StyleModule(**style)
        else:
            self.style_a, self.style_b = StyleModule(**style), StyleModule(**style)
        self.style_dim = style_dim

    def style_module(self, domain: Domain) -> StyleModule:
        """The E^S + MLP of ``domain``: the shared one, or the domain's own."""
        if domain not in ("a", "b"):
            raise ValueError(f"domain must be 'a' or 'b', got {domain!r}")
        return self.style if self.shared_style else getattr(self, f"style_{domain}")

    def style_code(self, images: Tensor, domain: Domain, mask: Tensor | None = None) -> Tensor:
        """(B, SD) style codes of ``domain``'s E^S; with ``mask`` of the white-filled item view."""
        inputs = images if mask is None else white_fill(images, mask)
        return self.style_module(domain)(inputs)

    def encode_a(self, images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """Person images and m_A -> (z_A^C, z_A^S): E_A^C(I, m), E^S(I m + 1 - m)."""
        return self.content_a(images, mask), self.style_code(images, "a", mask)

    def encode_b(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Catalog images -> (z_B^C, z_B^S)."""
        return self.content_b(images), self.style_code(images, "b")

    def decode_a(
        self,
        content: Tensor,
        style: Tensor,
        mask: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """G_A: person image (B, 3, H, W) wearing what (z^C, z^S) encode, fitted to m_A over C_A."""
        params = self.style_module("a").adain_params(style)
        return self.decoder_a(content, params, mask, context)

    def decode_b(self, content: Tensor, style: Tensor) -> Tensor:
        """G_B: catalog image (B, 3, H, W) of what (z^C, z^S) encode."""
        return self.decoder_b(content, self.style_module("b").adain_params(style))

    def take_off(self, images: Tensor, mask: Tensor) -> Tensor:
        """I_AB: the catalog view of the item a person wears (A -> B)."""
        return self.decode_b(*self.encode_a(images, mask))

    def try_on(self, items: Tensor, mask: Tensor | None, context: Tensor | None) -> Tensor:
        """I_BA: a catalog item put on the person of mask m_A and context C_A (B -> A)."""
        return self.decode_a(*self.encode_b(items), mask, context)
