// earshot: tinyBLAS compiled a second time, for AVX-512 F, BW, VL, DQ and VNNI (the build
// gives this file those flags), in a portable build whose baseline is AVX2. sgemm.cpp's
// llamafile_sgemm hands its products to this copy where earshot_ggml_avx512_kernels() says
// the CPU has them. Everything the copy defines is in an anonymous namespace but its entry
// point, renamed here; scripts/check-dispatch.sh checks that no symbol it shares with the
// rest of the build carries an AVX-512 instruction.
#define EARSHOT_SGEMM_AVX512_COPY 1
#define llamafile_sgemm earshot_llamafile_sgemm_avx512
#include "sgemm.cpp"
