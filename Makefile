# Building and deploying Spaceport on AWS (README, "Deploying"). Tests do not use this file:
# `bash scripts/test.sh` is the test command.
#
#   make lambda-zips                      # target/lambda/<function>/bootstrap.zip, arm64 (profile lambda)
#   make lambda-check                     # those bootstraps through the functions' runtime tests
#   make reconstruct-image IMAGE=<ecr uri>   # the reconstruct Lambda image (needs Docker), pushed
#   make deploy STACK=spaceport IMAGE=<ecr uri>  # both, then sam deploy (guided the first time)

FUNCTIONS := accept-upload submit-space poll-status fetch-artifact call-model notify-webhook
STACK ?= spaceport
IMAGE ?=
VENV := .venv-deploy

$(VENV)/.installed: infra/requirements-deploy.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r infra/requirements-deploy.txt
	touch $@

.PHONY: lambda-zips lambda-check reconstruct-image deploy
lambda-zips: $(VENV)/.installed
	rustup target add aarch64-unknown-linux-gnu
	# One build per function: built together, cargo would unify their spaceport-stack features
	# and link every step's clients into every zip.
	for f in $(FUNCTIONS); do \
		PATH="$(CURDIR)/$(VENV)/bin:$$PATH" cargo lambda build --profile lambda --arm64 \
			--output-format zip -p $$f || exit 1; \
	done
	@for f in $(FUNCTIONS); do ls -l target/lambda/$$f/bootstrap.zip; done

# The zips' own bootstraps (arm64 release builds) through the functions' runtime tests: the
# events/ payloads and ten real runs, under the Runtime API emulator and moto. On x86_64 they run
# under qemu-user (Debian: qemu-user libc6-arm64-cross).
LAMBDA_RUNNER ?= $(if $(filter aarch64,$(shell uname -m)),,qemu-aarch64 -L /usr/aarch64-linux-gnu)
lambda-check: lambda-zips
	for f in $(FUNCTIONS); do \
		python3 -m zipfile -e target/lambda/$$f/bootstrap.zip target/lambda-check/$$f/ || exit 1; \
		chmod +x target/lambda-check/$$f/bootstrap; \
		SPACEPORT_LAMBDA_BOOTSTRAP_DIR="$(CURDIR)/target/lambda-check" SPACEPORT_LAMBDA_RUNNER="$(LAMBDA_RUNNER)" \
			cargo test -p $$f the_bootstrap -- --nocapture || exit 1; \
	done

reconstruct-image:
	@test -n "$(IMAGE)" || { echo "IMAGE=<account>.dkr.ecr.<region>.amazonaws.com/<repo>:<tag> is required"; exit 2; }
	docker build -f functions/reconstruct/Dockerfile.lambda -t $(IMAGE) .
	docker push $(IMAGE)

deploy: lambda-zips reconstruct-image
	@command -v sam >/dev/null || { echo "the SAM CLI is required (pipx install aws-sam-cli)"; exit 2; }
	sam deploy --template-file infra/template.yaml --stack-name $(STACK) --resolve-s3 \
		--capabilities CAPABILITY_IAM --parameter-overrides ReconstructImageUri=$(IMAGE) \
		$(if $(wildcard samconfig.toml),,--guided)
