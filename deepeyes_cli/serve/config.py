"""`serve:` section (owned by the serve package): where the API listens, who may call it,
and the limits that keep one server healthy under any client.

Per-request ``max_turns``, ``max_tokens`` (per model turn) and ``temperature`` are honoured
up to the caps here; the caps default to the recipe's ``agent:`` values.
"""

from __future__ import annotations

from pydantic import Field

from deepeyes_cli.recipe.base import Section


class ServeConfig(Section):
    host: str = Field("127.0.0.1", description="Address to listen on; off loopback an api_key is required.")
    port: int = Field(8000, ge=0, le=65535, description="Port (0: any free port, printed on start).")
    api_key: str | None = Field(None, description="Bearer key clients must send (use ${DEEPEYES_API_KEY}).")
    model_name: str = Field("deepeyes", description="The model id /v1/models lists and requests name.")
    # Admission.
    max_concurrency: int = Field(16, ge=1, description="Trajectories running at once.")
    max_queue: int = Field(64, ge=0, description="Requests waiting for a slot; one more is answered 429.")
    queue_timeout_s: float = Field(300.0, gt=0, description="A request that waited this long is answered 429.")
    retry_after_s: int = Field(5, ge=1, description="Retry-After of a 429 (and of a 503 while draining).")
    # Request limits (answered 400 with the reason).
    max_request_mb: float = Field(32.0, gt=0, description="Largest request body.")
    max_images: int = Field(8, ge=1, description="Images in one request.")
    max_image_pixels: int = Field(40_000_000, ge=1024, description="Pixels of one input image (width x height); "
                                                                   "images within are downscaled per agent.")
    require_image: bool = Field(True, description="A request without an image is a 400 (the agent thinks "
                                                  "with images); false lets text-only questions through.")
    allow_image_urls: bool = Field(False, description="Fetch http(s) image URLs server-side. Off by default: "
                                                      "a URL makes the server connect wherever a client says.")
    image_url_timeout_s: float = Field(20.0, gt=0, description="Time limit to fetch one image URL.")
    # Caps on what a request may ask (None: the agent section's value).
    max_turns: int | None = Field(None, ge=1, description="Cap on a request's max_turns (default agent.max_turns).")
    max_tokens: int | None = Field(None, ge=1, description="Cap on a request's max_tokens, per model turn "
                                                           "(default agent.max_tokens_per_turn).")
    max_temperature: float = Field(2.0, ge=0, description="Cap on a request's temperature.")
    # Records and lifecycle.
    save_trajectories: bool = Field(False, description="Append every trajectory to trajectories_file.")
    trajectories_file: str | None = Field(None, description="JSONL for saved trajectories (readable by "
                                                            "`deepeyes view`); default <run dir>/trajectories.jsonl.")
    shutdown_grace_s: float = Field(120.0, gt=0, description="On SIGTERM/Ctrl-C, how long in-flight requests "
                                                             "may take to finish before they are cut.")
    access_log: bool = Field(False, description="Log every request line (uvicorn's access log).")
