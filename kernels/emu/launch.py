#!/usr/bin/env python3
"""Rewrites a .cu file for the CPU emulation: kernel<<<g, b, s, st>>>(args)
(or kernel<N><<<...>>>) becomes emu_launch(kernel, g, b, s, st, args), the
dynamic shared array a pointer to the emulated block's buffer, and unroll
pragmas go."""
import re
import sys

src = open(sys.argv[1]).read()
src = src.replace("extern __shared__ float smem[];",
                  "float *smem = (float *) emu_dyn_smem;")
# a template kernel's arguments (kernel<8><<<...) stay with its name
src = re.sub(r"([\w:]+(?:<[^<>]*>)?)<<<", r"emu_launch(\1, ", src)
src = src.replace(">>>(", ", ")
src = src.replace("#pragma unroll", "")
open(sys.argv[2], "w").write(src)
