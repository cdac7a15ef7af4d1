# qtool: one non-recursive Makefile. `make help` lists the targets.
HELP_all   = build ./qtool
HELP_check = build and run every test (unit drivers, op cases, end-to-end scripts)
HELP_demo  = run the main job on the bundled testdata
HELP_bench = time qtool against ONNX Runtime on ../shared (not part of check)
HELP_accuracy = the README's accuracy tables, measured again: MobileNetV1, then MobileNetV2/SqueezeNet against PyTorch FX PTQ (ACC_REAL=0 skips, ACC_SEG=1 adds segmentation; hours on 2 cores; not part of check)
HELP_san   = build with -fsanitize=address,undefined into build/san and run the tests under it
HELP_fuzz  = build the libFuzzer targets (clang) into build/fuzz; scripts/fuzz.sh runs them
HELP_install = install qtool, its man pages, profiles and bash completion under PREFIX (default /usr/local)

CC      ?= cc
PREFIX  ?= /usr/local
BUILD   ?= build
SAN     ?=
OPT     ?= -O3
PKGS    := libprotobuf-c libpng libjpeg libcjson openblas

CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -MMD -MP -pthread
CFLAGS  += -Ilib -I$(BUILD)/gen
ifneq ($(FUZZ),)
CFLAGS  += -fsanitize=fuzzer-no-link -Wno-unknown-pragmas
endif
ifneq ($(SAN),)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

# The libraries: checked by pkg-config; scripts/install-deps.sh installs what is missing.
DEPS_OK := $(shell pkg-config --exists $(PKGS) && command -v protoc-c >/dev/null && echo yes)
ifneq ($(DEPS_OK),yes)
ifeq ($(filter help clean,$(MAKECMDGOALS)),)
$(info qtool: missing build dependencies; running scripts/install-deps.sh)
DEPS_RUN := $(shell sh scripts/install-deps.sh >&2; echo $$?)
ifneq ($(DEPS_RUN),0)
$(error dependencies missing: run the command scripts/install-deps.sh printed above, then make again)
endif
endif
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS  += $(PKG_CFLAGS)
LDLIBS  += $(PKG_LIBS) -lm -pthread

GEN     := $(BUILD)/gen/onnx.pb-c.c
LIB_SRC := $(filter-out lib/test/%,$(sort $(wildcard lib/*/*.c) $(wildcard lib/ops/*/*.c)))
LIB_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC)) $(BUILD)/gen/onnx.pb-c.o
CLI_SRC := $(sort $(wildcard cli/*.c))
CLI_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(CLI_SRC))
TEST_SRC := $(sort $(wildcard lib/test/t_*.c))
TEST_BIN := $(patsubst lib/test/%.c,$(BUILD)/test/%,$(TEST_SRC))
FUZZ_SRC := $(sort $(wildcard lib/test/fuzz_*.c))
TEST_HELPERS := $(filter-out $(TEST_SRC) $(FUZZ_SRC),$(sort $(wildcard lib/test/*.c)))
TEST_HOBJ := $(patsubst %.c,$(BUILD)/%.o,$(TEST_HELPERS))

.PHONY: all check unit demo bench accuracy san fuzz fuzz-targets install clean help
all: qtool

qtool: $(BUILD)/qtool $(BUILD)/qtool.bash
	cp $< $@.tmp && mv -f $@.tmp $@

# bash completion, made from the binary's --help so it lists every option
$(BUILD)/qtool.bash: $(BUILD)/qtool scripts/gen-completion.sh
	sh scripts/gen-completion.sh $(BUILD)/qtool >$@.tmp && mv $@.tmp $@

$(BUILD)/gen/onnx.pb-c.c $(BUILD)/gen/onnx.pb-c.h: proto/onnx.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen proto/onnx.proto

# the built-in hardware profiles (share/profiles/*.json) as C strings
PROFILES := $(sort $(wildcard share/profiles/*.json))
$(BUILD)/gen/profiles.h: $(PROFILES)
	@mkdir -p $(BUILD)/gen
	@for f in $(PROFILES); do \
	    printf '{"%s",\n' "$$(basename $$f .json)"; \
	    sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$$/\\n"/' $$f; \
	    printf '},\n'; \
	done >$@.tmp && mv $@.tmp $@
$(BUILD)/lib/quant/profile.o: $(BUILD)/gen/profiles.h

$(BUILD)/gen/onnx.pb-c.o: $(BUILD)/gen/onnx.pb-c.c
	$(CC) $(filter-out -Werror -Wextra,$(CFLAGS)) -c $< -o $@

$(BUILD)/%.o: %.c $(BUILD)/gen/onnx.pb-c.h
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libqtool.a: $(LIB_OBJ)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(BUILD)/qtool: $(CLI_OBJ) $(BUILD)/libqtool.a
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libqtool.a $(LDLIBS)

$(BUILD)/test/%: $(BUILD)/lib/test/%.o $(TEST_HOBJ) $(BUILD)/libqtool.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(TEST_HOBJ) $(BUILD)/libqtool.a $(LDLIBS)

unit: $(TEST_BIN)

# check sets up what its tests use, as `make` does for the build: Debian's
# packages (apt-get as root; otherwise install-deps.sh prints the command) and
# onnxruntime-node in scripts/node_modules (npm); a test whose needs are still
# missing is skipped with a visible line and counted (scripts/run-tests.sh)
check: qtool $(TEST_BIN)
	@sh scripts/install-deps.sh --test || echo "make check: packages missing (command above): the tests that need them are skipped"
	@sh scripts/setup-node.sh || echo "make check: onnxruntime-node missing: the tests that need it are skipped"
	@sh scripts/run-tests.sh $(BUILD)

demo: qtool
	@sh scripts/demo.sh

bench: qtool
	@sh scripts/bench.sh

accuracy: qtool
	@sh scripts/accuracy.sh
	@sh scripts/accuracy-tf.sh

# end-to-end scripts left out under the sanitizers (CI time): real-model
# accuracy checks whose code paths the others cover
SAN_SKIP ?= t-zoo t-zoo-maxdrop t-models t-calib-models
san:
	$(MAKE) BUILD=build/san SAN=1 OPT=-O1 build/san/qtool unit
	@QT_SKIP="$(SAN_SKIP)" sh scripts/run-tests.sh build/san

# libFuzzer targets: the library built by clang with ASan + UBSan and the
# fuzzer's coverage hooks; lib/test/fuzz_X.c -> build/fuzz/fuzz_X.
FUZZ_BIN := $(patsubst lib/test/%.c,$(BUILD)/%,$(FUZZ_SRC))
fuzz:
	$(MAKE) BUILD=build/fuzz CC=clang SAN=1 FUZZ=1 OPT=-O1 fuzz-targets

fuzz-targets: $(FUZZ_BIN)

$(BUILD)/fuzz_%: $(BUILD)/lib/test/fuzz_%.o $(BUILD)/libqtool.a
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/libqtool.a $(LDLIBS)

install: $(BUILD)/qtool $(BUILD)/qtool.bash
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 755 $(BUILD)/qtool $(DESTDIR)$(PREFIX)/bin/qtool
	install -m 755 scripts/qtool-zoo $(DESTDIR)$(PREFIX)/bin/qtool-zoo
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 $(BUILD)/qtool.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/qtool
	install -d $(DESTDIR)$(PREFIX)/share/qtool/profiles
	install -m 644 share/profiles/*.json $(DESTDIR)$(PREFIX)/share/qtool/profiles/

clean:
	rm -rf build qtool

help:
	@$(foreach t,all check demo bench accuracy san fuzz install clean,printf '  %-8s %s\n' $(t) "$(HELP_$(t))";)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
