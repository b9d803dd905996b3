#!/usr/bin/env bash
# Issue 13 experiment: base decoder, bilinear last upsampling + grid loss (no grid) + noise inputs at the two finest
# levels (grain without a grid). Resumable: run again to continue.
cd "$(dirname "$0")/.."
exec "${PYTHON:-python}" -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no \
  scripts/train.py --cpu --init_from hybridstyle/weights/hybridstyle-base \
  --upsample_mode bilinear_finest --noise_levels 2 --grid_weight 2 \
  --content_dir data/train/content --style_dir data/train/style --output_dir "${OUT:-runs/noise}" \
  --resolution 128 --max_crop_scale 3 --train_batch_size 8 --mixed_precision no --use_ema --ema_decay 0.995 --seed 0 \
  --learning_rate 1e-4 --lr_scheduler constant --style_weight 8 --identity_weight 10 \
  --adv_weight 0.05 --gan_loss lsgan --adv_start_step 0 \
  --checkpointing_steps 50 --checkpoints_total_limit 4 --validation_steps 100000 \
  --max_train_steps 900 --resume_from_checkpoint latest "$@"
