# duet -- build, test, benchmark.
#   make          builds ./duet (installs missing Debian packages first)
#   make test     builds and runs every test (tests/run.sh prints the total)
#   make asan     the tests under AddressSanitizer + UBSan
#   make bench    benchmarks beside the PyTorch reference (see bench/)
#   make fuzz     libFuzzer harnesses (clang), a short run of each
#   make install  duet, libduet.{a,so}, duet.h and duet.pc under PREFIX
#                 (default /usr/local; DESTDIR stages); make uninstall
#   make examples examples/*.c against the in-tree library
#   make clean

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
BLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
BLAS_LIBS   := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
# "=": evaluated when used, i.e. after `deps` has installed Open MPI
MPI_CFLAGS   = $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS     = $(shell pkg-config --libs ompi-c 2>/dev/null || echo -lmpi)
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -Iinclude -Isrc \
           -fno-math-errno -fPIC $(BLAS_CFLAGS) $(MPI_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  += -ldnnl -lgomp $(MPI_LIBS) $(BLAS_LIBS) -llapacke -llapack -lyajl -ljansson -ljpeg -lpng -lstb -lmicrohttpd -lexpat -lm -lpthread

SRCS    := $(sort $(wildcard src/*/*.c))
OBJS    := $(SRCS:%.c=$(BUILD)/%.o)
TESTS   := $(sort $(wildcard tests/test_*.c))
TBINS   := $(TESTS:tests/%.c=$(BUILD)/tests/%)
LIB     := $(BUILD)/libduet.a
HDRS    := include/duet.h $(wildcard src/*/*.h) tests/check.h

# The shared library's version is the header's DUET_VERSION_STRING; its
# soname carries the major number.
VERSION := $(shell sed -n 's/.*DUET_VERSION_STRING *"\([^"]*\)".*/\1/p' include/duet.h)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
$(if $(VERSION),,$(error include/duet.h defines no DUET_VERSION_STRING))
SONAME  := libduet.so.$(MAJOR)
SHLIB   := $(BUILD)/libduet.so.$(VERSION)

PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

.PHONY: all deps test-deps test asan bench fuzz clean demo demo-synth ablation models \
        lib install uninstall examples

all: deps duet lib

deps:
	@scripts/deps.sh build

# What the tests use beyond the build: curl, numpy, chromium, the word vectors
# and the CNN weights. Each is fetched once; where one cannot be had (offline),
# the tests that need it skip and say so.
test-deps: deps
	@scripts/deps.sh test || echo "make test: curl/numpy/chromium unavailable: the tests that need them skip" >&2
	@scripts/vectors.sh >/dev/null || echo "make test: word vectors unavailable: the tests that need them skip" >&2
	@scripts/models.sh || echo "make test: ResNet-50 weights unavailable: the tests that need them skip" >&2

# copied then renamed: a running ./duet (make demo) keeps its old inode
duet: $(BUILD)/duet
	cp $< $@.tmp && mv -f $@.tmp $@

# Objects built before -fPIC joined CFLAGS cannot go into libduet.so: a
# build directory without this marker is rebuilt once.
PIC_MARK := $(BUILD)/.pic
$(PIC_MARK):
	@mkdir -p $(dir $@)
	@touch $@

$(BUILD)/%.o: %.c $(HDRS) $(PIC_MARK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# the web page is embedded into www.o (.incbin)
$(BUILD)/src/serve/www.o: src/serve/www/index.html

$(LIB): $(OBJS)
	@rm -f $@
	ar rcs $@ $^

# linked against its dependencies: a program needs only -lduet
$(SHLIB): $(OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $^ $(LDLIBS) -o $@
	ln -sf $(notdir $@) $(BUILD)/$(SONAME)
	ln -sf $(SONAME) $(BUILD)/libduet.so

lib: $(LIB) $(SHLIB)

TOOL_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(sort $(wildcard tools/*.c)))
$(BUILD)/tools/%.o: tools/%.c tools/cli.h $(HDRS) $(PIC_MARK)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itools -c $< -o $@

$(BUILD)/duet: $(TOOL_OBJS) $(LIB)
	$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c $(LIB) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

# The tests run the binary of this build ($(BUILD)/duet), so `make asan` tests
# the sanitized one; `make test` also refreshes ./duet.
# TEST_LDFLAGS: what a program linked against this build's library needs
# besides pkg-config's flags (the sanitizers under `make asan`).
test: test-deps $(BUILD)/duet $(TBINS) $(if $(filter build,$(BUILD)),duet)
	@DUET=$(BUILD)/duet TEST_BUILD=$(BUILD) TEST_LDFLAGS="$(LDFLAGS)" tests/run.sh $(TBINS) tests/cli/*.sh

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan OPT=-O1 \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
	  LDFLAGS="-fsanitize=address,undefined" test

BENCHES := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))
$(BUILD)/bench/%: bench/%.c $(LIB) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(LIB) $(LDLIBS) -o $@

bench: deps duet $(BENCHES)
	@scripts/deps.sh bench
	@BUILD=$(BUILD) bench/run.sh

FUZZERS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
fuzz: deps
	@mkdir -p build-fuzz
	@for f in $(FUZZERS); do \
	  n=$$(basename $$f .c); \
	  clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc $(BLAS_CFLAGS) $(MPI_CFLAGS) \
	    $$f $(SRCS) $(LDLIBS) -o build-fuzz/$$n || exit 1; \
	  rm -rf build-fuzz/corpus-$$n; cp -r tests/fixtures/fuzz/$${n#fuzz_} build-fuzz/corpus-$$n; \
	  echo "fuzz: $$n ($${FUZZ_SECONDS:-60} s)"; \
	  build-fuzz/$$n -max_total_time=$${FUZZ_SECONDS:-60} build-fuzz/corpus-$$n || exit 1; \
	done

clean:
	rm -rf build build-asan build-fuzz duet

# `make install PREFIX=DIR` (DESTDIR=STAGE to stage): duet.pc records
# PREFIX, never DESTDIR, so with PKG_CONFIG_PATH=DIR/lib/pkgconfig
# `pkg-config --cflags --libs duet` gives what a program needs (--static
# adds the dependencies, for libduet.a). examples/search.c shows the API.
$(BUILD)/duet.pc: duet.pc.in FORCE
	@mkdir -p $(dir $@)
	@sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|' \
	  -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|' -e 's|@VERSION@|$(VERSION)|' \
	  -e 's|@LIBS_PRIVATE@|$(strip $(LDLIBS))|' $< > $@

install: $(BUILD)/duet $(LIB) $(SHLIB) $(BUILD)/duet.pc
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(LIBDIR)" "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(PKGCONFIGDIR)"
	install -m 755 $(BUILD)/duet "$(DESTDIR)$(BINDIR)/duet"
	install -m 644 $(LIB) "$(DESTDIR)$(LIBDIR)/libduet.a"
	install -m 755 $(SHLIB) "$(DESTDIR)$(LIBDIR)/$(notdir $(SHLIB))"
	ln -sf $(notdir $(SHLIB)) "$(DESTDIR)$(LIBDIR)/$(SONAME)"
	ln -sf $(SONAME) "$(DESTDIR)$(LIBDIR)/libduet.so"
	install -m 644 include/duet.h "$(DESTDIR)$(INCLUDEDIR)/duet.h"
	install -m 644 $(BUILD)/duet.pc "$(DESTDIR)$(PKGCONFIGDIR)/duet.pc"

uninstall:
	rm -f "$(DESTDIR)$(BINDIR)/duet" "$(DESTDIR)$(LIBDIR)/libduet.a" "$(DESTDIR)$(LIBDIR)/$(notdir $(SHLIB))" \
	  "$(DESTDIR)$(LIBDIR)/$(SONAME)" "$(DESTDIR)$(LIBDIR)/libduet.so" "$(DESTDIR)$(INCLUDEDIR)/duet.h" \
	  "$(DESTDIR)$(PKGCONFIGDIR)/duet.pc"

# The examples see the public header only (no -Isrc).
EXAMPLES := $(patsubst %.c,$(BUILD)/%,$(sort $(wildcard examples/*.c)))
$(BUILD)/examples/%: examples/%.c include/duet.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Isrc,$(CFLAGS)) $< $(LIB) $(LDLIBS) -o $@
examples: $(EXAMPLES)

FORCE:

# The main job (docs/RUN.md): Flickr8K from pixels and words to a tested
# model, report.html and a search index, every stage cached in $(WORK)
# (a rerun redoes only what changed). DUET_DATA overrides the data directory;
# RUN_FLAGS adds `duet run` flags (e.g. RUN_FLAGS="--crops 10").
DUET_DATA ?= ../shared/data/flickr8k
WORK ?= work/flickr8k
demo: deps duet
	@scripts/models.sh
	@scripts/vectors.sh >/dev/null
	./duet run flickr8k --data $(DUET_DATA) --work $(WORK) $(RUN_FLAGS)

# The ablation grid of the paper's tables on the same cached features:
# $(WORK)/ablation.md and ablation.json.
ablation: deps duet
	@scripts/models.sh
	@scripts/vectors.sh >/dev/null
	./duet run flickr8k --data $(DUET_DATA) --work $(WORK) --ablation $(RUN_FLAGS)

# A train + evaluate run on a synthetic example (no downloads).
DEMO_DIR ?= work/demo
demo-synth: deps duet
	@mkdir -p $(DEMO_DIR)
	./duet synth -o $(DEMO_DIR)
	./duet train --dataset tsv:$(DEMO_DIR)/captions.tsv --image-features $(DEMO_DIR)/images.npy \
	  --text-features $(DEMO_DIR)/texts.npy --hidden 512 --embed-dim 128 --batch-images 100 \
	  --lr 1e-3 --epochs 15 -o $(DEMO_DIR)/model.duet
	./duet eval --model $(DEMO_DIR)/model.duet --dataset tsv:$(DEMO_DIR)/captions.tsv \
	  --image-features $(DEMO_DIR)/images.npy --text-features $(DEMO_DIR)/texts.npy --split test

# Pretrained image models (ResNet-50, TF.js) into ${DUET_CACHE:-~/.cache/duet}.
models:
	@scripts/models.sh
