/* CPU emulation of cub::DeviceSegmentedRadixSort (stable, descending). */
#ifndef EMU_CUB_SORT
#define EMU_CUB_SORT
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>
#include <functional>
#include "cuda_runtime.h"
void emu_record_or_run(cudaStream_t s, std::function<void()> f);
namespace cub {
struct DeviceSegmentedRadixSort {
    template <class K, class V, class O>
    static cudaError_t SortPairsDescending(void *tmp, size_t &bytes,
        const K *kin, K *kout, const V *vin, V *vout, int64_t n,
        int64_t nseg, O begin, O end, int = 0, int = sizeof(K) * 8,
        cudaStream_t s = 0)
    {
        if (tmp == nullptr) {
            bytes = 4096;
            return cudaSuccess;
        }
        (void) n;
        emu_record_or_run(s, [=]() {
            for (int64_t g = 0; g < nseg; g++) {
                std::vector<int64_t> idx(end[g] - begin[g]);
                std::iota(idx.begin(), idx.end(), (int64_t) begin[g]);
                std::stable_sort(idx.begin(), idx.end(),
                    [&](int64_t a, int64_t b) { return kin[a] > kin[b]; });
                for (size_t i = 0; i < idx.size(); i++) {
                    kout[begin[g] + i] = kin[idx[i]];
                    vout[begin[g] + i] = vin[idx[i]];
                }
            }
        });
        return cudaSuccess;
    }
};
}
#endif
