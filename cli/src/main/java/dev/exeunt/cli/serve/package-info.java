/**
 * {@code exeunt serve}: an HTTP text generation server with the API of EE-LLM's (Megatron-LM's)
 * text generation server, on the JDK's {@code com.sun.net.httpserver}.
 *
 * <h2>Endpoints</h2>
 * <ul>
 *   <li>{@code PUT /api} (POST is accepted too): generate. Other methods: 405 with an {@code Allow} header.</li>
 *   <li>{@code GET /health} (and HEAD): {@code status, family, layers, exits, final_layer, vocab, context,
 *       limits {max_prompts, max_tokens, max_prompt_tokens, queue, max_body_bytes}, waiting, busy}.</li>
 *   <li>Any other path: 404.</li>
 * </ul>
 * Every error is JSON {@code {"error": "..."}}; a validation error names the field.
 *
 * <h2>Request fields ({@code PUT /api})</h2>
 * A JSON object; an unknown field is a 400 (Megatron options this engine lacks, such as
 * {@code beam_width}, get a 400 saying so). A field set to JSON {@code null} takes its default.
 * <ul>
 *   <li>{@code prompts}: list of 1..{@code --max-prompts} (8) strings, required. A prompt may be "" only
 *       when add_BOS puts a BOS token in front; a prompt longer than {@code --max-prompt-tokens}
 *       (default: the model's context minus one) tokens is a 400.</li>
 *   <li>{@code tokens_to_generate}: integer 0..{@code --max-tokens} (512), default 64. Generation also ends at
 *       the tokenizer's EOS token and when the model's context is full.</li>
 *   <li>{@code logprobs}: boolean, default false.</li>
 *   <li>{@code temperature}: number in [0, 100], default 1.0 (Megatron's default: sampling); 0 = greedy.</li>
 *   <li>{@code top_k}: integer >= 0, default 0 (off). {@code top_p}: number in [0, 1], default 0 (off, as in
 *       Megatron). Both may be given together (top-k first, then top-p).</li>
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
 *   <li>{@code logprobs} (only when requested): the natural log of the probability the producing head gave
 *       each generated token (its softmax at temperature 1), floored at log(Float.MIN_VALUE).</li>
 *   <li>{@code tokens}: the generated token ids. {@code exit_layers}: the 1-based layer of the exit that
 *       produced each token (n_layers for the final head).</li>
 *   <li>{@code finish_reasons}: "length", "eos", "stop" (a stop sequence) or "context" (model context full).</li>
 * </ul>
 *
 * <h2>Concurrency</h2>
 * One worker thread runs one request at a time (all prompts of a request run as one batch, each
 * exiting on its own); up to {@code --queue} (16) requests wait, more get 503 with {@code Retry-After}.
 * Requests are not merged across clients, so a request's output never depends on what else is running.
 * Bodies over {@code --max-body} (1 MiB) get 413. On shutdown the generation in flight ends after its
 * next token and every waiting request gets 503.
 */
package dev.exeunt.cli.serve;
