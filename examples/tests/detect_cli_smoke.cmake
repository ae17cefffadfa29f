# ctest driver for crowdloss-detect: train one epoch of POTO on a tiny synthetic pedestrian set,
# resume for a second, evaluate (as CrowdHuman .odgt), predict; bad input exits with an error.
# Run with -DDETECT=<exe> -DWORK=<dir>.
file(REMOVE_RECURSE "${WORK}")
set(EXE "${DETECT}")
include("${CMAKE_CURRENT_LIST_DIR}/cli_smoke.cmake")

# Every option is checked before any file is read or written (as for crowdloss-count).
set(absent --data coco:${WORK}/absent_train.json --val coco:${WORK}/absent_val.json --out ${WORK}/never)
expect_error("typo in --data's format" "unknown --data format 'crowdhumen' \\(synthetic, crowdhuman, coco\\)"
             train --data crowdhumen:${WORK}/x.odgt --val coco:${WORK}/absent_val.json --out ${WORK}/never)
expect_error("unknown --assign" "unknown --assign 'atss'" train ${absent} --assign atss)
expect_error("bad --fpn-channels" "--fpn-channels must be a positive multiple of 32, got 48" train ${absent} --fpn-channels 48)
expect_error("--data read before --val" "absent_train.json" train ${absent})
expect_absent(${WORK}/never)
run("train --help" train --help)
expect_output("train --help" "FORMAT one of synthetic, crowdhuman, coco")

set(train train --data synthetic:${WORK}/train --val synthetic:${WORK}/val --synthetic-count 8 --workers 2
    --backbone resnet18 --width 0.25 --fpn-channels 64 --batch 4 --optimizer adamw --lr 1e-3 --warmup 2)
run("train poto" ${train} --epochs 1 --out ${WORK}/poto)
run("train --resume" ${train} --epochs 2 --out ${WORK}/poto --resume)
expect_lines("${WORK}/poto/metrics.jsonl" 2)  # one line per epoch, none lost or repeated by the resume
run("eval" eval --checkpoint ${WORK}/poto/best.pt --data crowdhuman:${WORK}/val/annotation.odgt)
expect_output("eval" "AP50 [0-9.]+ mMR [0-9.]+ recall [0-9.]+")
run("bench" bench --out ${WORK}/bench --backbone resnet18 --width 0.25 --fpn-channels 32 --batch 2 --steps 2
    --warmup-steps 1 --workers 1)
expect_output("bench" "bare training step [0-9.]+ images/s, trainer [0-9.]+ images/s, ratio [0-9.]+")
run("predict" predict --checkpoint ${WORK}/poto/last.pt --out ${WORK}/predict ${WORK}/val/Images/000000.png)
expect_output("predict" "people")
if(NOT EXISTS "${WORK}/predict/000000_detections.png")
  message(FATAL_ERROR "predict wrote no ${WORK}/predict/000000_detections.png")
endif()
expect_failure("unknown assignment" ${train} --epochs 1 --assign atss --out ${WORK}/bad)
expect_failure("missing checkpoint" eval --checkpoint ${WORK}/absent.pt --data crowdhuman:${WORK}/val/annotation.odgt)
message(STATUS "crowdloss-detect smoke: ${last_output}")
