"""Batch runs' addresses (included by chat.urls)."""

from django.urls import path, re_path

from chat import views_batch

urlpatterns = [
    path("batch/", views_batch.run_list, name="batch_list"),
    path("batch/new", views_batch.run_new, name="batch_new"),
    path("batch/<uuid:public_id>/", views_batch.run_page, name="batch_run"),
    path("batch/<uuid:public_id>/results", views_batch.run_results, name="batch_results"),
    path("batch/<uuid:public_id>/cancel", views_batch.run_cancel, name="batch_cancel"),
    path("batch/<uuid:public_id>/delete", views_batch.run_delete, name="batch_delete"),
    path("batch/<uuid:public_id>/results/<uuid:result_id>/review", views_batch.result_review, name="batch_review"),
    path("batch/<uuid:public_id>/compare", views_batch.run_compare, name="batch_compare"),
    path("t/<uuid:public_id>/checks", views_batch.testset_checks, name="testset_checks"),
    re_path(r"^batch/(?P<public_id>[0-9a-f-]{36})/export\.(?P<fmt>csv|jsonl)$", views_batch.run_export, name="batch_export"),
]
