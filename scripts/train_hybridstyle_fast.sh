#!/usr/bin/env bash
# Rebuild hybridstyle-fast as shipped: the training set, then each training stage continued from the previous one.
#
#     bash scripts/train_hybridstyle_fast.sh   # then: python scripts/export_model.py runs/fast --name hybridstyle-fast ...
#
# Each stage is the same scripts/train.py run with --resume_from_checkpoint latest, so the script can be stopped
# (Ctrl-C saves a checkpoint) and started again at any point: finished stages return at once. The stage boundaries
# and settings are the ones the shipped model was trained with (model_card_fast.md, "Training procedure").
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-runs/fast}
# CPU_THREADS=1 leaves a core free for other work (two processes sharing cores with 2 threads each slow down badly).
THREADS=${CPU_THREADS:+--cpu_threads $CPU_THREADS}

"$PYTHON" scripts/prepare_data.py --out data/train

stage() {
  "$PYTHON" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision bf16 --dynamo_backend no \
    scripts/train.py --cpu --architecture fast \
    --content_dir data/train/content --style_dir data/train/style --output_dir "$OUT" \
    --train_batch_size 8 --mixed_precision bf16 --use_ema --seed 0 \
    --learning_rate 2e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 200 \
    --adv_weight 0.05 --gan_loss lsgan --adv_start_step 1000 \
    --checkpointing_steps 250 --checkpoints_total_limit 3 --validation_steps 250 \
    --resume_from_checkpoint latest $THREADS "$@"
}

# 1. From scratch: the light model learns to reconstruct (identity) and to paint at once; crops from images scaled to
#    a short side of 128-384 px, so strokes have the size they have when the model is used at 512 px.
stage --resolution 128 --max_crop_scale 3 --style_weight 15 --identity_weight 10 --max_train_steps 936
# 2. Stronger style: at step 500 the held-out outputs were under-stylized next to the peer (style mean/std 0.69 vs 0.33
#    on 8 pairs) while keeping much more content (content loss 0.42 vs 1.07; SSIM 0.82 vs 0.45).
stage --resolution 128 --max_crop_scale 3 --style_weight 20 --identity_weight 10 --max_train_steps 1324
# 3. Stronger still: at step 1250 the style distance had halved (0.40 vs the peer's 0.33 on the same 8 pairs) with
#    content to spare (content loss 0.41 vs 1.07, SSIM 0.80 vs 0.45); the target is 0.8x the peer's style distance.
stage --resolution 128 --max_crop_scale 3 --style_weight 40 --identity_weight 10 --max_train_steps 1990
# 4. A deeper decoder, continued from stage 3's weights in a new run: at step 1750 the style distance was still 1.12x the
#    peer's, and per VGG layer the gap was at the fine ones (relu2_1 2.6x, relu1_1 1.4x, relu3_1 1.2x the peer's, relu4_1
#    equal): the outputs kept the photo's fine texture and changed its colours. One more conv per decoder level
#    (identity-initialised, so the run starts from the stage 3 model exactly) adds capacity there, and the GAN weight
#    goes from 0.05 (under 1% of the generator loss at style weight 40) to 0.3 to push towards painted texture.
OUT="${OUT}-grown" stage --init_from "$OUT/checkpoint-1990/model" --grow_decoder_layers_per_level 2 \
  --resolution 128 --max_crop_scale 3 --style_weight 40 --identity_weight 10 --adv_weight 0.3 --adv_start_step 0 \
  --lr_warmup_steps 100 --max_train_steps 2373
# 5. "Paint" (issue 13): stage 4's model did not paint (independent judge: style 1.53x the peer, mostly a colour
#    transfer). The decoder gains a style code that modulates every conv (FiLM; zero-initialised, so the run starts from
#    stage 4's model exactly), the two finest skips are flattened to their means in 30% of samples (the decoder must
#    paint fine texture instead of copying the photo's), the style loss adds Gram matrices (texture a colour shift
#    cannot fake), identity weight 10 -> 2 (it rewarded copying), 192 px crops; fp32 (bf16 is slower on CPUs without
#    AMX). Trained on the set prepared with the 140-pair holdout (data/holdout.txt), which stages 1-4 predate.
OUT="${OUT}-paint" stage --init_from "${OUT}-grown/checkpoint-2373/model" --add_style_modulation 256 --skip_dropout 0.3 \
  --resolution 192 --train_batch_size 4 --max_crop_scale 3 --mixed_precision no --style_loss both --style_weight 30 \
  --identity_weight 2 --adv_weight 0.3 --adv_start_step 0 --lr_warmup_steps 50 --checkpointing_steps 50 \
  --max_train_steps "${PAINT_STEPS:-3000}"
