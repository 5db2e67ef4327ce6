# ngx_http_infer_module build.
#   make                 engine library, tools, nginx module
#   make test            unit tests (TAP) and Test::Nginx suites, via prove
#   make asan            unit tests under AddressSanitizer + UBSan
#   make fuzz            libFuzzer harnesses, FUZZ_TIME seconds each
#   make asan-nginx      the nginx suites against an ASan+UBSan module
#   make NGINX_SRC=DIR   build the module against an nginx source tree
# The CUDA backend is compiled whenever nvcc is found (CUDA=0 disables it).

CC       ?= gcc
BUILD    ?= build
OPT      ?= -O2 -g
CFLAGS   ?=
CFLAGS   += $(OPT) -std=gnu11 -Wall -Wextra -Werror -fPIC -pthread -fopenmp-simd \
            -D_GNU_SOURCE -Isrc/engine -Isrc/proto -Ikernels
LDLIBS   += -ljansson -lpcre2-8 -lutf8proc -ldl -lprotobuf-c -lmsgpackc \
            -lm -lpthread

CUDA_HOME ?= /usr/local/cuda
NVCC      ?= $(shell command -v nvcc 2>/dev/null || \
                     ls $(CUDA_HOME)/bin/nvcc 2>/dev/null)
CUDA      ?= $(if $(NVCC),1,0)

# kernels/*.c: the kernels' CPU references (and host-side planning), built
# with or without CUDA so their tests always run.
ENGINE_SRC := $(wildcard src/engine/*.c) $(wildcard src/proto/*.c) \
              $(wildcard kernels/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)

# The KServe v2 / Triton gRPC messages, src/proto/grpc_service.proto,
# compiled by protoc-c (Debian protobuf-c-compiler) into $(BUILD)/gen at
# build time, never kept in the repository: the /predict codec's protobuf
# encoding, and the gRPC front end's.
PROTOC_C   ?= protoc-c
GEN_DIR     = $(BUILD)/gen
PROTO_GEN   = $(GEN_DIR)/grpc_service.pb-c.c $(GEN_DIR)/grpc_service.pb-c.h
CFLAGS     += -I$(GEN_DIR)
ENGINE_OBJ += $(GEN_DIR)/grpc_service.pb-c.o

ifeq ($(CUDA),1)
CUDA_ARCH  ?= -gencode arch=compute_90,code=sm_90 \
              -gencode arch=compute_90,code=compute_90
NVCCFLAGS  += -O3 -std=c++17 $(CUDA_ARCH) -Xcompiler -fPIC,-Wall \
              -Isrc/engine -Ikernels -DINFER_HAVE_CUDA
CFLAGS     += -DINFER_HAVE_CUDA -I$(CUDA_HOME)/include
CUDA_CSRC  := $(wildcard src/engine/cuda/*.c)
CUDA_CUSRC := $(wildcard src/engine/cuda/*.cu) $(wildcard kernels/*.cu)
ENGINE_OBJ += $(CUDA_CSRC:%.c=$(BUILD)/%.o) $(CUDA_CUSRC:%.cu=$(BUILD)/%.o)
CUDA_LIBDIRS := $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib
LDLIBS     += $(foreach d,$(CUDA_LIBDIRS),-L$(d) -Wl,-rpath,$(d)) \
              -lcublasLt -lcublas -lnccl -lcudart -lstdc++
endif

LIB     := $(BUILD)/libinfer.a
TOOLS   := $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/*.c))
TESTS   := $(patsubst t/unit/%.c,$(BUILD)/t/%,$(wildcard t/unit/test_*.c))

.PHONY: all engine tools tests test unit-test nginx-test asan module clean deps \
        venv \
        fuzz fuzz-build fuzz-bins asan-nginx asan-nginx-test


all: engine tools module

# Debian packages for the build and the tests (skips what is installed).
deps:
	tools/deps.sh --test

engine: $(LIB)
tools: $(TOOLS)
tests: $(TESTS)

# Every compile writes the headers it read into a .d file beside its output
# (-MMD), so a changed header (kernels/*.cuh, src/engine/cuda/*.h, ...)
# rebuilds exactly what includes it; -MP keeps a deleted header from
# breaking the build.  An output without its .d (a build dir older than
# this rule) is rebuilt once through the empty .d rule; the touch keeps the
# output newer than the .d the compiler wrote.
DEPFLAGS := -MMD -MP

$(BUILD)/%.o: %.c $(BUILD)/%.d
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@
	@touch $@

$(BUILD)/%.o: %.cu $(BUILD)/%.d
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) $(DEPFLAGS) -MF $(@:.o=.d) -c $< -o $@
	@touch $@

$(BUILD)/%.d: ;
.PRECIOUS: $(BUILD)/%.d

$(PROTO_GEN) &: src/proto/grpc_service.proto
	@mkdir -p $(GEN_DIR)
	$(PROTOC_C) --proto_path=src/proto --c_out=$(GEN_DIR) $<

$(GEN_DIR)/grpc_service.pb-c.o: $(GEN_DIR)/grpc_service.pb-c.c
	$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# A codec may include the generated header: it exists before they build.
$(filter $(BUILD)/src/proto/%.o,$(ENGINE_OBJ)): | $(PROTO_GEN)

$(LIB): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/%: tools/%.c $(BUILD)/%.d $(LIB)
	$(CC) $(CFLAGS) $(DEPFLAGS) $< -o $@ $(LIB) $(LDLIBS)
	@touch $@

$(BUILD)/t/%: t/unit/%.c $(BUILD)/t/%.d $(LIB) | $(TOOLS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -It/unit $< -o $@ $(LIB) $(LDLIBS)
	@touch $@

-include $(ENGINE_OBJ:.o=.d) $(TOOLS:=.d) $(TESTS:=.d)

# Unit tests print TAP; prove runs each binary from the repository root so
# ../shared resolves.
unit-test: $(TESTS) $(TOOLS)
	prove -v -e '' $(TESTS)

test: unit-test nginx-test

asan:
	$(MAKE) BUILD=build-asan CUDA=0 OPT="-O1 -g -fno-omit-frame-pointer \
	    -fsanitize=address,undefined -fno-sanitize-recover=all" \
	    LDLIBS_EXTRA="-fsanitize=address,undefined" unit-test

LDLIBS += $(LDLIBS_EXTRA)

# ---- fuzzing ---------------------------------------------------------------
# libFuzzer harnesses fuzz/fuzz_NAME.c (seeds in fuzz/corpus/NAME/), built
# with clang against an ASan+UBSan engine in $(FUZZ_BUILD).  fuzz/run.sh
# first feeds every file of ../shared/repro to every harness, then fuzzes
# each for FUZZ_TIME seconds, FUZZ_JOBS at a time, on a scratch copy of its
# corpus; any crash, leak, sanitizer report or timeout fails.
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 20
FUZZ_JOBS  ?= $(shell nproc)
FUZZ_CC    ?= clang
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_BINS  := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(wildcard fuzz/fuzz_*.c))

fuzz: fuzz-build
	FUZZ_TIME=$(FUZZ_TIME) FUZZ_JOBS=$(FUZZ_JOBS) \
	INFER_SHARED=$(SHARED_DIR) fuzz/run.sh $(FUZZ_BUILD)

# Clang warns that sanitized loops cannot honour `omp simd`; that is the
# price of the instrumentation, not a defect.
fuzz-build:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) CUDA=0 \
	    OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link \
	         $(FUZZ_SAN) -Wno-pass-failed" fuzz-bins

fuzz-bins: $(FUZZ_BINS)

$(BUILD)/fuzz/%: fuzz/%.c $(BUILD)/fuzz/%.d $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(DEPFLAGS) -Ifuzz -fsanitize=fuzzer $< -o $@ \
	    $(LIB) $(LDLIBS)
	@touch $@

-include $(FUZZ_BINS:=.d)

# ---- nginx module (owned by the module work) -------------------------------
# The module is built by nginx's own build system against the Debian nginx
# sources (same configure flags as /usr/sbin/nginx, or it is "not binary
# compatible"), or against NGINX_SRC=DIR.
NGINX_SRC    ?=
NGINX_BIN    ?= /usr/sbin/nginx
NGX_SRC      := $(if $(NGINX_SRC),$(NGINX_SRC),$(BUILD)/nginx-src)
MODULE       := $(BUILD)/ngx_http_infer_module.so
MODULE_DEPS  := config ngx_http_infer_module.c $(wildcard src/ngx/*) \
                $(wildcard src/proto/*.h src/engine/*.h)
SHARED_DIR   ?= $(or $(INFER_SHARED),../shared)
# Our Test::Nginx subset only where the real one is not installed.
TEST_NGINX_I := $(shell perl -MTest::Nginx::Socket -e1 2>/dev/null \
                  || echo -I t/lib)

module: $(MODULE)

$(BUILD)/nginx-src/configure:
	rm -rf $(BUILD)/nginx-src
	@mkdir -p $(BUILD)
	cp -r /usr/share/nginx/src $(BUILD)/nginx-src

# What config reads; configure runs again when it changes.
$(BUILD)/ngx-module.env: FORCE
	@mkdir -p $(BUILD)
	@echo "INFER_LIB=$(abspath $(LIB)) INFER_CUDA=$(CUDA)" > $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; fi

$(NGX_SRC)/objs/Makefile: $(BUILD)/ngx-module.env config \
                          $(if $(NGINX_SRC),,$(BUILD)/nginx-src/configure) \
                          | $(LIB)
	cd $(NGX_SRC) && env $$(cat $(CURDIR)/$(BUILD)/ngx-module.env) bash -c '\
	    set -e; \
	    if [ -f conf_flags ]; then source ./conf_flags; \
	    else NGX_CONF_FLAGS=(--with-compat --with-threads \
	        --with-http_ssl_module --with-http_v2_module); fi; \
	    cfg=./configure; [ -x $$cfg ] || cfg=auto/configure; \
	    $$cfg "$${NGX_CONF_FLAGS[@]}" --add-dynamic-module=$(CURDIR)'

# NGX_CC_EXTRA: flags appended to nginx's own CFLAGS and LINK for the
# module (make asan-nginx: the sanitizers).
NGX_CC_EXTRA ?=
ngx_var = $$(sed -n 's/^$(1) =[[:space:]]*//p' objs/Makefile)
NGX_MAKE_VARS := $(if $(NGX_CC_EXTRA), \
    CFLAGS="$(call ngx_var,CFLAGS) $(NGX_CC_EXTRA)" \
    LINK="$(call ngx_var,LINK) $(NGX_CC_EXTRA)")

# nginx's Makefile does not know our library: relink whenever we rebuild.
$(MODULE): $(NGX_SRC)/objs/Makefile $(LIB) $(MODULE_DEPS)
	rm -f $(NGX_SRC)/objs/ngx_http_infer_module.so
	cd $(NGX_SRC) && env -u MAKEFLAGS -u MFLAGS $(MAKE) -f objs/Makefile \
	    $(NGX_MAKE_VARS) modules
	@# a new file, renamed into place: rewriting the .so a running nginx has
	@# loaded would change its code under it
	cp $(NGX_SRC)/objs/ngx_http_infer_module.so $@.new
	mv -f $@.new $@

# Test::Nginx suites against /usr/sbin/nginx with the built module and the
# stories260K model from ../shared.
# The Python clients of the suites, from t/requirements.txt (PyPI), in a
# venv of Debian's python3 (python3-venv).
PYTHON       ?= /usr/bin/python3
VENV         ?= build/venv

venv: $(VENV)/ok

$(VENV)/ok: t/requirements.txt
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check \
	    -r t/requirements.txt
	touch $@

nginx-test: $(MODULE) $(BUILD)/infer-gen-model $(VENV)/ok
	TEST_PYTHON=$(abspath $(VENV))/bin/python3 INFER_ROOT=$(CURDIR) \
	TEST_NGINX_BINARY=$(NGINX_BIN) \
	TEST_NGINX_LOAD_MODULES=$(abspath $(MODULE)) \
	TEST_NGINX_MODEL_DIR=$(abspath $(SHARED_DIR))/models/stories260K \
	TEST_NGINX_GEN_MODEL=$(abspath $(BUILD)/infer-gen-model) \
	    prove $(TEST_NGINX_I) t/*.t

# ---- sanitized module --------------------------------------------------------
# make asan-nginx: the engine and the module built with ASan+UBSan (gcc,
# without CUDA) in $(ASAN_NGINX_BUILD), then every suite against the Debian
# nginx with the ASan runtime preloaded; tools/asan-nginx.sh says how
# reports from the workers are caught and which leaks count.
ASAN_NGINX_BUILD ?= build-asan-nginx
ASAN_NGINX_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
                  -fsanitize-undefined-trap-on-error

asan-nginx:
	$(MAKE) BUILD=$(ASAN_NGINX_BUILD) CUDA=0 \
	    OPT="-O1 -g -fno-omit-frame-pointer $(ASAN_NGINX_SAN)" \
	    LDLIBS_EXTRA="$(ASAN_NGINX_SAN)" NGX_CC_EXTRA="$(ASAN_NGINX_SAN)" \
	    asan-nginx-test

asan-nginx-test: $(MODULE) $(BUILD)/infer-gen-model $(VENV)/ok
	TEST_PYTHON=$(abspath $(VENV))/bin/python3 INFER_ROOT=$(CURDIR) \
	NGINX_BIN=$(NGINX_BIN) CC=$(CC) MODULE=$(abspath $(MODULE)) \
	MODEL_DIR=$(abspath $(SHARED_DIR))/models/stories260K \
	GEN_MODEL=$(abspath $(BUILD)/infer-gen-model) \
	SHARED_DIR=$(abspath $(SHARED_DIR)) TEST_NGINX_I="$(TEST_NGINX_I)" \
	    tools/asan-nginx.sh $(BUILD)

# Installs what is missing, builds and starts nginx on localhost:8080 with
# conf/nginx.conf (MODEL=DIR to serve your own model; without it a small
# random-weight model is generated).
run:
	MODEL=$(MODEL) BUILD=$(BUILD) tools/run.sh

.PHONY: FORCE run
FORCE:
# ---------------------------------------------------------------------------

clean:
	rm -rf build build-asan $(FUZZ_BUILD) $(ASAN_NGINX_BUILD)
