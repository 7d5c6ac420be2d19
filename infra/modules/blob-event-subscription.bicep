metadata description = 'BlobCreated events of the raw container to the Event Grid-based blob trigger. The endpoint is the blobs extension webhook, which needs the blobs_extension system key: the post-deploy script reads it and deploys this module.'

@description('Name of the data lake system topic (in this resource group).')
param systemTopicName string

@description('Default host name of the function app.')
param functionAppHostName string

@description('Name of the blob-triggered function.')
param functionName string = 'on_raw_blob_created'

@description('Container the trigger watches (MLOPS_RAW_CONTAINER).')
param containerName string

@description('The blobs_extension system key of the function app.')
@secure()
param blobsExtensionKey string

@description('Resource id of the storage account that receives undeliverable events.')
param deadLetterStorageId string

@description('Container for undeliverable events.')
param deadLetterContainerName string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource rawBlobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: 'raw-blob-created'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionAppHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobsExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/${containerName}/blobs/'
      // A Data Lake CreateFile fires an empty BlobCreated before its FlushWithClose: skip it.
      advancedFilters: [
        {
          operatorType: 'NumberGreaterThan'
          key: 'data.contentLength'
          value: 0
        }
      ]
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

@description('Name of the subscription.')
output name string = rawBlobCreated.name
