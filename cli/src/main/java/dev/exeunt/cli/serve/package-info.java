/**
 * {@code exeunt serve}: an HTTP text generation server with the API of EE-LLM's (Megatron-LM's)
 * text generation server, on the JDK's {@code com.sun.net.httpserver}.
 *
 * <h2>Endpoints</h2>
 * <ul>
 *   <li>{@code PUT /api} (POST is accepted too): generate. Other methods: 405 with an {@code Allow} header.</li>
 *   <li>{@code GET /health} (and HEAD): {@code status, family, layers, exits, final_layer, vocab, tokenizer_vocab,
 *       context, limits {max_prompts, max_tokens, max_prompt_tokens, queue, max_body_bytes}, speculative, draft_max,
 *       waiting, busy, cancelled} (speculative, draft_max: the defaults of requests that do not say; cancelled:
 *       requests dropped because their client disconnected).</li>
 *   <li>{@code POST /v1/completions} and {@code POST /v1/chat/completions}: OpenAI's APIs ({@link OpenAiCompletions}),
 *       translated into the same request and limits as {@code PUT /api}. {@code "stream": true} answers with
 *       server-sent events ({@link EventStream}): one chunk per generated token (its new text, possibly empty
 *       while it could still begin a stop sequence, and its {@code exit_layer}), then a chunk per choice with its
 *       {@code finish_reason}, the usage when {@code stream_options.include_usage}, and {@code data: [DONE]}.
 *       Chat messages become a prompt through a {@link ChatTemplate} ({@code --chat-template}, else the model's own).</li>
 *   <li>With {@code --api-key}, every path but /health wants {@code Authorization: Bearer <key>} (else 401).</li>
 *   <li>Any other path: 404.</li>
 * </ul>
 * Every error is JSON {@code {"error": "..."}}; a validation error (400) names the field. A failure that is
 * not the request's (the model produced NaN, a bug) is a 500 naming the cause.
 *
 * <h2>Request fields ({@code PUT /api})</h2>
 * A JSON object with every field EE-LLM's server (megatron/early_exit_text_generation_server.py) reads, so
 * its {@code tools/request_client.py} works unchanged; an unknown field is a 400 ({@code max_len} and
 * {@code sentences} get Megatron's "no longer used" message). A field set to JSON {@code null} takes its default.
 * <ul>
 *   <li>{@code prompts}: list of 1..{@code --max-prompts} (8) strings, required (a single string is taken as one
 *       prompt, as EE-LLM does). A prompt may be "" only
 *       when add_BOS puts a BOS token in front; a prompt longer than {@code --max-prompt-tokens}
 *       (default: the model's context minus one) tokens is a 400.</li>
 *   <li>{@code tokens_to_generate}: integer 0..{@code --max-tokens} (512), default 64; each prompt's tokens plus
 *       tokens_to_generate must fit in the model's context (else 400 naming the limit). Generation also ends
 *       at the tokenizer's EOS token.</li>
 *   <li>{@code logprobs}: boolean, default false.</li>
 *   <li>{@code temperature}: 0 (greedy) or a number in [1e-6, 100], default 1.0 (Megatron's default: sampling);
 *       smaller positive values would overflow the softmax and are a 400.</li>
 *   <li>{@code top_k}: integer >= 0, default 0 (off). {@code top_p}: number in [0, 1], default 0 (off, as in
 *       Megatron). Both may be given together (top-k first, then top-p).</li>
 *   <li>{@code top_p_decay}: number in [0, 1], default 0 (off); {@code top_p_bound}: number in (0, top_p]. Both
 *       need top_p: after each generated token a prompt's top_p becomes max(top_p * top_p_decay, top_p_bound).</li>
 *   <li>{@code prevent_newline_after_colon}: boolean, default false: after a token ending with ':' no token
 *       starting with a newline is generated (Megatron bans its single "\n" token).</li>
 *   <li>{@code print_max_prob}: boolean, default false: every token's top probability at each exit it reached
 *       and at the final head is logged to the server's stderr (as EE-LLM prints it) and returned as
 *       {@code max_probs} (per prompt, per token, one entry per head in the order of {@code max_prob_layers}:
 *       the exits' layers, then n_layers for the final head; null for a head the token did not reach because
 *       it exited earlier). It costs one extra head evaluation per exit and token, so it runs only when asked.</li>
 *   <li>{@code beam_width}: integer 1..16: beam search instead of sampling, for one prompt (more is a 400),
 *       through the full model: beams compare whole-model log-probabilities, so use_early_exit: true with
 *       beam_width is a 400 (EE-LLM's server parses beam_width but never runs beams; Megatron's runs them
 *       without early exit). {@code length_penalty} (number, default 1): a finished beam scores
 *       sum(log p) / length^length_penalty. {@code stop_token} (an id; default the tokenizer's EOS) ends a beam.
 *       Both are a 400 without beam_width; so are stop_sequences and print_max_prob with it. The answer holds
 *       every beam, best first: {@code text, segments, tokens, scores, finish_reasons}, logprobs null.</li>
 *   <li>{@code random_seed}: integer >= 0; default a random seed. Prompt i of a request samples with seed + i,
 *       so the same request with the same seed gives the same output.</li>
 *   <li>{@code stop_sequences}: up to 16 non-empty strings of at most 256 characters. See below.</li>
 *   <li>{@code add_BOS}: boolean, default true when the tokenizer has a BOS token (Megatron's default is
 *       false; Exeunt's generate command and Llama-family models want the BOS).</li>
 *   <li>{@code echo_prompts}: boolean, default false: when true, each returned text is the prompt string
 *       followed by the generated text (Megatron always echoes).</li>
 *   <li>{@code use_early_exit}: boolean, default false. {@code early_exit_thres}: number >= 0, default 1.0;
 *       a token leaves at the first active exit whose top probability is >= the threshold (>= 1: never).
 *       The threshold applies only when use_early_exit is true; {@code "use_early_exit": false} forces 1.0.
 *       The first generated token of each prompt comes from the prefill, which always runs every layer.</li>
 *   <li>{@code exit_layers}: list of 1-based layers of the model's exits to use; absent or empty = all. A
 *       layer with no exit is a 400 (the final head is not an exit).</li>
 *   <li>{@code no_log}: boolean, accepted for Megatron clients and ignored (prompts are never logged).</li>
 *   <li>{@code speculative} (this engine's): boolean, default the server's {@code --speculative} (off): lossless
 *       self-speculative decoding. A token that leaves at an exit (use_early_exit, early_exit_thres) is a draft;
 *       the next token that runs every layer verifies the pending drafts, so the output is the full model's,
 *       token for token, and {@code exit_layers} shows the exit that drafted each accepted token. Without
 *       use_early_exit nothing is drafted. {@code draft_max}: integer >= 1, default the server's
 *       {@code --draft-max} (7): at most this many drafts await verification; a 400 without speculative.
 *       speculative: true with beam_width is a 400 (beam search runs the full model).</li>
 * </ul>
 * Booleans must be JSON {@code true}/{@code false} and mean their value (Megatron treats the mere presence
 * of some flags as true); integers must be JSON integers; a string where a number belongs is a 400.
 *
 * <h2>Stop sequences</h2>
 * After each generated token the generated text so far (decoded as it follows its prompt, special tokens
 * skipped; the prompt itself is never searched) is searched for every stop sequence. Generation of that
 * prompt ends at the first token after which the text <em>contains</em> a stop sequence, even when the
 * token carries characters past it (a token such as ".\n\n" stops on "\n"). The returned {@code text} is
 * cut just <em>before</em> the earliest occurrence (the stop sequence is not included). {@code tokens},
 * {@code segments}, {@code exit_layers} and {@code logprobs} keep every generated token, including the
 * one(s) that completed the stop sequence, and {@code finish_reasons} is {@code "stop"}.
 *
 * <h2>Response</h2>
 * One entry per prompt in each list:
 * <ul>
 *   <li>{@code text}: the generated text (prompt first when echo_prompts), special tokens skipped, decoded
 *       as the continuation of its prompt (so a SentencePiece leading space survives); without a stop
 *       sequence and with a byte-level BPE tokenizer it equals the tokenizer's decode of {@code tokens}.</li>
 *   <li>{@code segments}: the text of each generated token (its bytes as UTF-8; a token holding part of a
 *       character shows U+FFFD, as Megatron's per-token detokenize does).</li>
 *   <li>{@code logprobs} (null unless requested): the natural log of the probability the producing head gave
 *       each generated token (its softmax at temperature 1), floored at log(Float.MIN_VALUE).</li>
 *   <li>{@code tokens}: the generated token ids. {@code exit_layers}: the 1-based layer of the exit that
 *       produced each token (n_layers for the final head).</li>
 *   <li>{@code finish_reasons}: "length", "eos" or "stop" (a stop sequence).</li>
 *   <li>{@code requst_time} (sic, EE-LLM's key) and {@code request_time}: seconds the generation took.</li>
 *   <li>{@code max_probs}, {@code max_prob_layers}: only with print_max_prob (above).</li>
 *   <li>{@code acceptance}: only when the request decoded speculatively: one {@code {layer, drafted, accepted}}
 *       per exit, over all prompts of the request.</li>
 * </ul>
 * A model whose vocab_size exceeds its tokenizer's (padding rows) is found at start: ids past the tokenizer
 * are masked out of every head (exit decisions and sampling see only real tokens) and never generated.
 *
 * <h2>Concurrency</h2>
 * One worker thread runs one request at a time (all prompts of a request run as one batch, each
 * exiting on its own); up to {@code --queue} (16) requests wait, more get 503 with {@code Retry-After}.
 * Requests are not merged across clients, so a request's output never depends on what else is running.
 * Bodies over {@code --max-body} (1 MiB) get 413.
 *
 * <h2>Clients that leave, and shutdown</h2>
 * The JDK's HTTP server has no disconnect callback, so between tokens (at most every 50 ms) the worker asks
 * the kernel whether the request's TCP connection is still ESTABLISHED ({@code ClientProbe}, Linux
 * /proc/net/tcp and tcp6; elsewhere no disconnect is seen). A request whose client left is skipped when it
 * comes up, or stopped after its next token; /health counts it in {@code cancelled}. On shutdown new
 * requests and those waiting get 503; the generation in flight runs to its end and its client gets the
 * answer (after 30 s it is stopped after its next token and answered 503).
 */
package dev.exeunt.cli.serve;
