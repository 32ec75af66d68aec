# Building the corral .deb. Included from the top-level Makefile; run make
# from the top of the repository.
#
#   make deb                  dist/corral_$(VERSION)_amd64.deb
#   make deb VERSION=0.1.1    the same, as another version (upgrade tests)
#   make lintian              build the .deb and check it with lintian
#   make deb-clean            remove build/ and dist/
#
# make always runs `go build` for the binaries and leaves it to go's build
# cache to decide what changed (which a list of sources in make would miss:
# embedded files, new packages, the toolchain). To package binaries built
# some other way, put them in build/ and tell make not to rebuild them:
#   make deb -o build/corral -o build/corral-generator -o build/corral-demo

VERSION ?= $(shell cat packaging/VERSION)
GO ?= go
# nfpm, as pinned and installed by `make deps` into $(GOBIN) (set by the Makefile).
NFPM ?= $(GOBIN)/nfpm
LINTIAN ?= lintian

DEB := dist/corral_$(VERSION)_amd64.deb
DEB_BINARIES := build/corral build/corral-generator build/corral-demo build/corrald
DEB_MANPAGES := build/man/corral.1.gz build/man/corral.toml.5.gz build/man/corral-generator.8.gz \
	build/man/corrald.8.gz
DEB_PACKAGING := nfpm.yaml packaging/app.toml packaging/copyright packaging/corral.service \
	packaging/org.corral.Corral1.conf packaging/corral.bash-completion packaging/50-corral.conf \
	packaging/lintian-overrides packaging/postinst packaging/prerm packaging/postrm

.PHONY: deb lintian deb-clean

deb: $(DEB)

# Reproducible: every time stamp in the .deb is the date of the newest
# changelog entry (SOURCE_DATE_EPOCH, unless set), so building the same tree
# twice gives the same bytes.
$(DEB): $(DEB_BINARIES) $(DEB_MANPAGES) build/changelog.gz $(DEB_PACKAGING)
	@mkdir -p $(@D)
	@[ -x '$(NFPM)' ] || { echo "no nfpm at $(NFPM): run 'make deps' (as root), which installs the pinned one" >&2; exit 1; }
	VERSION=$(VERSION) \
	SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(date -d "$$(sed -n 's/^ -- .*>  //p' build/changelog | head -n 1)" +%s)} \
		$(NFPM) package --config nfpm.yaml --packager deb --target $@

# Static binaries for amd64 whatever the build host, version stamped in.
$(DEB_BINARIES): build/%: deb-force
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath \
		-ldflags '-s -w -X main.version=$(VERSION)' -o $@ ./cmd/$*

# build/version holds the VERSION of the last build and changes only with
# it, so that a new VERSION rebuilds the changelog.
build/version: deb-force
	@mkdir -p $(@D)
	@echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@

$(DEB_MANPAGES): build/man/%.gz: packaging/man/%
	@mkdir -p $(@D)
	gzip -9n < $< > $@

build/changelog: packaging/changelog packaging/mkchangelog.sh build/version
	sh packaging/mkchangelog.sh '$(VERSION)' $< > $@

build/changelog.gz: build/changelog
	gzip -9n < $< > $@

lintian: $(DEB)
	$(LINTIAN) -I -E --pedantic --fail-on error,warning $(DEB)

deb-clean:
	rm -rf build dist

.PHONY: deb-force
deb-force:
