metadata description = 'Event Grid subscriptions on the Azure ML workspace system topic: one Event Grid-triggered function per concern (ARCHITECTURE F4). Deployed after the code (an AzureFunction destination must name a function that exists).'

@description('Name of the workspace system topic (in this resource group).')
param systemTopicName string

@description('Resource id of the function app.')
param functionAppId string

@description('Resource id of the storage account that receives undeliverable events.')
param deadLetterStorageId string

@description('Container for undeliverable events.')
param deadLetterContainerName string

@description('Prefix of the names of the models the app registers (MLOPS_MODEL_NAME_PREFIX); ModelRegistered events for other models in the workspace are not delivered.')
param modelNamePrefix string = 'forecast-'

@description('Prefix of the experiments the app submits its jobs under (orchestrators/aml_events.py EXPERIMENT_PREFIX); run events of other experiments are not delivered.')
param experimentNamePrefix string = 'forecast-'

@description('Prefix of the subscription names: the function app\'s name. The workspace topic may be shared by several deployments (one topic per workspace), and each needs its own subscriptions to its own app.')
param namePrefix string

// Event Grid ANDs separate advanced filters and ORs the values of one filter, so "terminal failure
// OR monitor threshold breach" is two subscriptions to the same function. An event matching both is
// delivered twice with the same id; the handler is idempotent by event id.
// Keys are the camelCase names real workspaces deliver; string comparisons are case-insensitive.
// Subject filters: a ModelRegistered subject is models/{name}:{version}, so a name prefix narrows
// it to the app's models. Run events have subjects experiments/{experimentId}/runs/{runId}: the
// experiment is a GUID, so no subject prefix can select the app's runs. Their data names the
// experiment, so failures and completions are narrowed to the app's experiments with an
// advanced filter (without it every run of every team in the workspace is delivered). Monitor
// breaches are not: a model monitor's runs carry the monitor's experiment, which the app does
// not name; they are narrowed by the breach tag, and the handler judges them by the segment tag.
var experimentFilter = {
  operatorType: 'StringBeginsWith'
  key: 'data.experimentName'
  values: [experimentNamePrefix]
}
var subscriptions = [
  {
    name: '${namePrefix}-model-registered'
    functionName: 'on_model_registered'
    eventTypes: ['Microsoft.MachineLearningServices.ModelRegistered']
    subjectBeginsWith: 'models/${modelNamePrefix}'
    advancedFilters: []
  }
  {
    name: '${namePrefix}-run-terminal-failure'
    functionName: 'on_run_status_changed'
    eventTypes: ['Microsoft.MachineLearningServices.RunStatusChanged']
    subjectBeginsWith: ''
    advancedFilters: [
      {
        operatorType: 'StringIn'
        key: 'data.runStatus'
        values: ['Failed', 'Canceled', 'NotResponding']
      }
      experimentFilter
    ]
  }
  {
    name: '${namePrefix}-monitor-threshold-breach'
    functionName: 'on_run_status_changed'
    eventTypes: ['Microsoft.MachineLearningServices.RunStatusChanged']
    subjectBeginsWith: ''
    advancedFilters: [
      {
        operatorType: 'StringContains'
        key: 'data.runTags.azureml_modelmonitor_threshold_breached'
        values: ['violating metric thresholds']
      }
    ]
  }
  {
    name: '${namePrefix}-run-completed'
    functionName: 'on_run_completed'
    eventTypes: ['Microsoft.MachineLearningServices.RunCompleted']
    subjectBeginsWith: ''
    advancedFilters: [
      experimentFilter
    ]
  }
]

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource eventSubscriptions 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = [
  for sub in subscriptions: {
    parent: systemTopic
    name: sub.name
    properties: {
      destination: {
        endpointType: 'AzureFunction'
        properties: {
          resourceId: '${functionAppId}/functions/${sub.functionName}'
          maxEventsPerBatch: 1
          preferredBatchSizeInKilobytes: 64
        }
      }
      eventDeliverySchema: 'EventGridSchema'
      filter: {
        includedEventTypes: sub.eventTypes
        subjectBeginsWith: sub.subjectBeginsWith
        advancedFilters: sub.advancedFilters
      }
      retryPolicy: {
        maxDeliveryAttempts: 30
        eventTimeToLiveInMinutes: 1440
      }
      deadLetterWithResourceIdentity: {
        identity: {
          type: 'SystemAssigned'
        }
        deadLetterDestination: {
          endpointType: 'StorageBlob'
          properties: {
            resourceId: deadLetterStorageId
            blobContainerName: deadLetterContainerName
          }
        }
      }
    }
  }
]

@description('Names of the subscriptions.')
output names string[] = [for sub in subscriptions: sub.name]
